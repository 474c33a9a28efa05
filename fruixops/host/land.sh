# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): manifests and items --
# verify what the controller sends, unpack it out of sight, audit it, land it.

# --- bundles and manifests -------------------------------------------------

# The most a bundle read from stdin may hold (manifest, signature, listings):
# a controller, or a deploy key, cannot fill the host's disk with one.
BUNDLE_MAX=268435456

# read_bundle: the bundle on stdin into $TMP/bundle (unpack_plain); it must
# hold a manifest and its signature.
read_bundle() {
    unpack_plain "$TMP/bundle"
    if [ ! -s "$TMP/bundle/manifest" ] || [ ! -f "$TMP/bundle/manifest.sig" ]; then
        die "the bundle lacks manifest or manifest.sig"
    fi
}

# unpack_plain DIR: the tar on stdin (at most BUNDLE_MAX bytes) into DIR,
# as plain files of the receiver's own making: only members with a plain
# name (letters, digits, . _ -; no directory), each as the bytes of a
# regular file (tar -O). Nothing of what the tar says about owners, modes,
# set-id bits, devices or links is ever made on this host, and no member is
# written through a path it names: it is unsigned until checked.
unpack_plain() {
    mkdir "$1"
    head -c "$BUNDLE_MAX" >"$1.tar" || die "cannot read the bundle"
    if [ "$(wc -c <"$1.tar")" -ge "$BUNDLE_MAX" ]; then
        die "the bundle is larger than $BUNDLE_MAX bytes"
    fi
    if ! tar -tf - <"$1.tar" >"$1.members" 2>"$1.err"; then
        store_full && die "disk full on $STORE: the bundle does not fit"
        die "cannot read the bundle: $(head -n 1 "$1.err")"
    fi
    n=0
    while IFS= read -r member; do
        case $member in ''|.*|*[!A-Za-z0-9._-]*) continue ;; esac
        n=$((n + 1))
        [ "$n" -le 64 ] || die "the bundle has too many members"
        [ ! -e "$1/$member" ] || die "the bundle has member $member twice"
        tar -xOf - "$member" <"$1.tar" >"$1/$member" 2>/dev/null ||
            die "cannot read $member from the bundle"
    done <"$1.members"
    rm -f "$1.tar" "$1.members" "$1.err"
}

# field NAME FILE: the value of a header line "NAME value" of a manifest.
field() { awk -v k="$1" '$1 == k && NF == 2 { print $2; exit }' "$2"; }

# signed_by FILE SIG: the name of the trusted key whose Ed25519 signature SIG
# over FILE verifies; nothing if none does.
signed_by() {
    for key in "$STATE"/trusted/*.pem; do
        [ -f "$key" ] || continue
        if openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$1" -sigfile "$2" \
                >/dev/null 2>&1; then
            basename "$key" .pem
            return 0
        fi
    done
}

# check_serial SERIAL NOW WHAT: a signed statement's serial (the signer's
# clock in milliseconds) must be above the last one this host accepted, and
# not more than a day ahead of this host's clock: a bad controller clock (or
# 2^63-1) would otherwise make every later statement a "replay".
check_serial() {
    if [ "${#1}" -gt 16 ] || [ "$1" -gt $((($2 + 86400) * 1000)) ]; then
        die "$3 serial $1 is more than a day ahead of this host's clock ($2): refused"
    fi
    last=$(last_serial)
    [ "$1" -gt "$last" ] || die "$3 serial $1 is not above the last accepted ($last): replay refused"
}

# last_serial: the highest serial this host accepted: last-serial, or a
# generation recorded with a higher one (a receiver stopped between
# recording a generation and writing last-serial).
last_serial() {
    { cat "$STATE/last-serial" 2>/dev/null || :
      for p in "$GENS"/*/provenance; do
          [ -f "$p" ] && sed -n 's/^serial=//p' "$p"
      done
    } | awk '/^[0-9]+$/ && length($0) <= 16 && (m == "" || $0 + 0 > m + 0) { m = $0 }
        END { print (m == "" ? 0 : m) }'
}

# Verify $TMP/bundle/manifest; on success set SIGNER, M_* and write
# $TMP/items (path sha256 size refs listing-sha256 zstd-sha256 per line).
verify_manifest() {
    m=$TMP/bundle/manifest
    SIGNER=$(signed_by "$m" "$TMP/bundle/manifest.sig")
    [ -n "$SIGNER" ] || die "manifest signature does not verify against any trusted key"
    # Structure: same rules as the controller's parser, checked again here.
    LC_ALL=C awk '
        /[\001-\037\177]/ { bad = "control character in line " NR; exit }
        NR == 1 { if ($0 != "fruixops-manifest 3") bad = "unknown manifest format"; next }
        $0 == "end" { ended = 1; next }
        ended { bad = "text after end" }
        $1 == "item" {
            if (NF != 7) { bad = "bad item line"; next }
            if ($2 !~ /^\/frx\/store\/[0-9a-f]+-[A-Za-z0-9][A-Za-z0-9._+-]*$/ ||
                length($2) < 11 + 64 + 2 || substr($2, 11 + 64 + 1, 1) != "-" ||
                substr($2, 12, 64) !~ /^[0-9a-f]+$/) bad = "bad store path " $2
            if ($3 !~ /^[0-9a-f]+$/ || length($3) != 64) bad = "bad sha256"
            if ($4 !~ /^[0-9]+$/) bad = "bad size"
            if ($6 !~ /^[0-9a-f]+$/ || length($6) != 64) bad = "bad listing sha256"
            if ($7 !~ /^[0-9a-f]+$/ || length($7) != 64) bad = "bad zstd sha256"
            if (seen[$2]++) bad = "item listed twice"
            next
        }
        $1 == "check" {
            if (NF != 4 || $2 !~ /^[A-Za-z0-9._-]+$/ || $3 !~ /^[A-Za-z0-9+\/=]+$/ ||
                $4 !~ /^[A-Za-z0-9+\/=]+$/) bad = "bad check line"
            if (checks[$2]++) bad = "check listed twice"
            next
        }
        NF != 2 { bad = "bad line " NR }
        END { if (!ended && bad == "") bad = "no end line"; if (bad != "") { print bad; exit 1 } }
    ' "$m" >"$TMP/check" || die "malformed manifest: $(cat "$TMP/check")"
    M_HOST=$(field host "$m"); M_SERIAL=$(field serial "$m")
    M_EXPIRES=$(field expires "$m"); M_SYSTEM=$(field system "$m")
    M_BASE=$(field base "$m"); M_LABEL=$(field version-label "$m")
    case $M_SERIAL in ''|*[!0-9]*) die "manifest serial is not a number" ;; esac
    case $M_EXPIRES in ''|*[!0-9]*) die "manifest expiry is not a number" ;; esac
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    [ -n "$me" ] || die "this host has no recorded name (run inv bootstrap)"
    [ "$M_HOST" = "$me" ] || die "manifest is for host '$M_HOST', this is '$me'"
    now=$(date +%s)
    if [ "${#M_EXPIRES}" -gt 12 ] || [ "$now" -gt "$M_EXPIRES" ]; then
        die "manifest expired at $M_EXPIRES (now $now)"
    fi
    check_serial "$M_SERIAL" "$now" manifest
    awk '$1 == "item" { print $2, $3, $4, $5, $6, $7 }' "$m" >"$TMP/items"
    # Compared as strings, never as a pattern.
    awk -v s="$M_SYSTEM" '$1 == s { f = 1 } END { exit !f }' "$TMP/items" ||
        die "the system item is not in the manifest"
}

# --- items ---------------------------------------------------------------------


# check_item PATH SHA ZSHA LISTING: check what `item` unpacked and audited for
# PATH against the manifest (the bytes received hash to the signed sha256 of
# the form they came in), and its listing. Everything that can fail happens
# here, for every item, before any item lands.
check_item() {
    name=$(basename "$1")
    got=$TMP/got/$name
    [ -f "$got.done" ] || die "item $name was not sent and is not in the store"
    # A delta has no signed archive: its files are held to the listing alone.
    if [ ! -f "$got.delta" ]; then
        case $(cat "$got.sha") in
            "$2"|"$3") ;;
            *) die "item $name: content hash does not match the manifest" ;;
        esac
    fi
    [ ! -s "$got.refused" ] || die "item $name: $(cat "$got.refused")"
    # What was unpacked (listed by `item`), whatever its size, must be what
    # the manifest signs; a listing sent along must be that too.
    sums=$got.sums
    [ -f "$sums" ] || die "item $name was not listed"
    [ "$(openssl dgst -sha256 -r <"$sums" | cut -c1-64)" = "$4" ] ||
        die "item $name: its file listing does not match the manifest"
    mkdir -p "$TMP/ready" "$SUMS"
    mv -f "$sums" "$TMP/ready/$name.sums"
}

# land_item PATH: a checked item into the store, by renames only. The listing
# first: an item in the store always has one.
land_item() {
    name=$(basename "$1")
    mv -f "$TMP/ready/$name.sums" "$SUMS/.$name.sums.new"
    mv -f "$SUMS/.$name.sums.new" "$SUMS/$name.sums"
    chmod u+w "$TMP/unpack/$name"          # the item root is renamed, then sealed
    mv "$TMP/unpack/$name" "$1"
    chmod a-w "$1"
    LANDED=$((LANDED + 1))
}

cmd_plan() {
    esp_option plan "$@"
    new_tmp
    read_bundle
    verify_manifest
    print_state
    print_generations
    print_bootloader "$ESP"
    if command -v zstd >/dev/null 2>&1; then echo "zstd yes"; else echo "zstd no"; fi
    f=$(fetcher)
    if [ -n "$f" ]; then echo "fetch $f"; fi
    nmissing=0
    while read -r p _; do
        [ -d "$p" ] || { echo "missing $p"; nmissing=$((nmissing + 1)); }
    done <"$TMP/items"
    # Whether new items could reuse files of this store (then the controller
    # asks which, with `need` or in the receive).
    if [ "$nmissing" -gt 0 ] && [ -n "$(reusable | head -n 1)" ]; then echo "reuse yes"; fi
    echo "verified $SIGNER"
}

cmd_receive() {
    trial=''
    deployer=-
    while [ $# -gt 0 ]; do
        case $1 in
            --trial) trial=1 ;;
            --deployer) shift; deployer=$(printf '%s' "${1:-}" | tr -c 'A-Za-z0-9@._:-' '_') ;;
            *) die "receive: unknown option '$1'" ;;
        esac
        shift
    done
    # Lock before reading anything: a second deploy fails at once.
    receive_begin "$deployer"
    : >"$TMP/bundle/manifest"
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        [ "$n" -le 100000 ] || die "manifest too long"
        printf '%s\n' "$line" >>"$TMP/bundle/manifest"
        [ "$line" = end ] && break
    done
    IFS= read -r line || die "no signature after the manifest"
    case $line in "sig "*) ;; *) die "expected a signature line" ;; esac
    printf '%s\n' "${line#sig }" | openssl base64 -d -A >"$TMP/bundle/manifest.sig" ||
        die "the signature is not base64"
    verify_manifest
    echo "ready $$ $(cat "$TMP/token")"
    # The items arrive now, each on a channel of its own (`item`).
    IFS= read -r line || line=
    [ "$line" = commit ] || die "the controller gave up before committing"
    receive_commit "$deployer" "$trial"
}

# receive_begin WHO: take the lock for WHO and make the temporary directory
# a receive unpacks into.
receive_begin() {
    lock "$1"
    clean_leftovers
    reconcile
    new_tmp
    mkdir "$TMP/bundle" "$TMP/unpack" "$TMP/got"
    # The commands that add to this receive (item, listings, pull) must
    # show this token, which only the receive's own controller has: its pid
    # is no secret (status shows the lock's holder).
    (umask 077 && openssl rand -hex 16 >"$TMP/token") || die "cannot make the receive's token"
}

# receive_commit WHO TRIAL: every item of the verified manifest is in the
# store or was taken (take_item): check them all, land them, record the
# generation for WHO and make it the loader's default (TRIAL: the one-shot
# next boot).
receive_commit() {
    while read -r p sha _ _ lsha zsha; do
        [ -d "$p" ] || check_item "$p" "$sha" "$zsha" "$lsha"
    done <"$TMP/items"
    check_bootable
    # Every byte of every new item on stable storage before the renames that
    # make them visible (each item was flushed by `item`; their listings
    # here); the renames themselves before the generation.
    if [ -d "$TMP/ready" ]; then flush_tree "$TMP/ready"; fi
    LANDED=0
    while read -r p _; do
        [ -d "$p" ] || land_item "$p"
    done <"$TMP/items"
    flush "$STORE" "$SUMS"
    # Once the generation is recorded (with its serial), this manifest can
    # never be accepted again (last_serial); last-serial follows. Stopped
    # before, nothing of it counts and the same manifest may come again.
    record_generation "$1"
    printf '%s\n' "$M_SERIAL" | publish "$STATE/last-serial"
    n=$NEWGEN
    if [ -n "$2" ]; then
        set_nextboot "$n"
    else
        make_default "$n"
    fi
    echo "landed $LANDED"
    echo "generation $n"
}

# item_dir PATH: where an item of the manifest being received is now: in the
# store, or unpacked out of sight.
item_dir() {
    if [ -d "$1" ]; then echo "$1"; else echo "$TMP/unpack/$(basename "$1")"; fi
}

# check_bootable: before anything lands, the system the manifest names must be
# one the loader can boot: its kernel link names a kernel item of this
# manifest that holds boot/kernel, and it has the boot/init hand-over.
check_bootable() {
    sys=$(item_dir "$M_SYSTEM")
    k=$(readlink "$sys/kernel" 2>/dev/null) || die "the system $M_SYSTEM has no kernel link"
    awk -v k="$k" '$1 == k { f = 1 } END { exit !f }' "$TMP/items" ||
        die "the system's kernel $k is not in the manifest"
    [ -d "$(item_dir "$k")/boot/kernel" ] || die "the kernel item $k has no boot/kernel"
    [ -f "$sys/boot/init" ] || die "the system $M_SYSTEM has no boot/init"
}

# unpack_stream CODEC: what was sent, as a tar stream (codecs: "" or "delta",
# and their zstd-compressed forms "zstd" and "delta.zstd").
unpack_stream() {
    case $1 in *zstd) zstd -dcq ;; *) cat ;; esac
}

# receiving PID: check that receive PID holds the lock and waits for items,
# and that this command comes from that receive's controller: the first line
# of stdin is "token TOKEN", the token the receive printed with "ready".
# Sets T to its temporary directory.
receiving() {
    case $1 in ''|*[!0-9]*) die "needs the receive's pid" ;; esac
    T=$STORE/.fruixops-tmp.$1 RECEIVE_PID=$1
    holder=$(readlink "$LOCK" 2>/dev/null) || holder=
    case $holder in "pid=$1,"*) ;; *) die "no receive $1 holds the lock" ;; esac
    if [ ! -d "$T/got" ] || [ ! -s "$T/token" ]; then die "receive $1 is not ready for items"; fi
    IFS= read -r given || given=
    [ "$given" = "token $(cat "$T/token")" ] ||
        refuse_access "not the token of receive $1: only its own controller adds to it"
}

# claim NAME: this command alone takes item NAME of the receive in $T:
# refused, before it touches anything, if the item is being taken or was.
claim() {
    if [ -e "$T/unpack/$1" ] || [ -e "$T/got/$1.done" ] ||
            ! mkdir "$T/got/.$1.taking" 2>/dev/null; then
        die "item $1 was sent twice"
    fi
}

# take NAME CODEC WHY: take_item NAME CODEC (stdin), claimed. Refused, it
# leaves nothing in $T (forget_item), so that the item may come again
# another way (whole, or pushed), and WHY holds the reason.
take() {
    claim "$1"
    # take_item refuses by exiting: it runs in a subshell of its own, with
    # errexit on (set +e around it, so that the subshell is not a
    # condition, where errexit would be ignored).
    set +e
    (
        set -e
        trap - EXIT INT TERM HUP PIPE
        take_item "$1" "$2"
    ) 2>"$3"
    took=$?
    set -e
    if [ "$took" != 0 ]; then forget_item "$1"; fi
    rmdir "$T/got/.$1.taking"
    return "$took"
}

# why_refused FILE: the reason a refused command wrote in FILE.
why_refused() {
    reason=$(sed -n 's/^refused: //p' "$1" | tail -n 1)
    echo "${reason:-refused (no reason given)}"
}

# split_listings ITEMS DIR: the listings on stdin, each after a line "=NAME",
# into DIR/NAME.sums; only names of items in ITEMS, each once. Each must hash
# to the manifest's listing sha256.
split_listings() {
    LC_ALL=C awk -v dir="$2" '
        NR == FNR { k = $1; sub(/.*\//, "", k); item[k] = 1; next }
        /^=/ {
            if (f != "") close(f)
            n = substr($0, 2)
            if (!(n in item) || (n in seen)) { bad = "unexpected listing for '\''" n "'\''"; exit }
            seen[n] = 1
            f = dir "/" n ".sums"
            next
        }
        f == "" { bad = "a listing without a name"; exit }
        { print > f }
        END { if (bad != "") { print bad > "/dev/stderr"; exit 1 } }
    ' "$1" - 2>"$2.err" || die "listings: $(head -n 1 "$2.err")"
    while read -r p _ _ _ lsha _; do
        s=$2/$(basename "$p").sums
        [ -f "$s" ] || continue
        [ "$(openssl dgst -sha256 -r <"$s" | cut -c1-64)" = "$lsha" ] ||
            die "item $(basename "$p"): its file listing does not match the manifest"
    done <"$1"
}

# listings PID [zstd]: the listings of the items being received; answers
# what to send of each (need_answer).
cmd_listings() {
    receiving "${1:-}"
    if [ "${2:-}" = pull ]; then
        shift 2
        pull_listings "$@"
        return
    fi
    case ${2:-} in ''|zstd) ;; *) die "unknown codec '${2:-}'" ;; esac
    mkdir "$T/listings.part" || die "listings sent twice"
    unpack_stream "${2:-}" | split_listings "$T/items" "$T/listings.part"
    mv "$T/listings.part" "$T/listings"
    need_answer "$T/listings" "$T/have"
}

# need: bundle: manifest, manifest.sig, listings (as for `listings`). What a
# receive would be asked to send of each listed item. Changes nothing.
cmd_need() {
    new_tmp
    read_bundle
    verify_manifest
    mkdir "$TMP/listings"
    [ -f "$TMP/bundle/listings" ] || die "the bundle lacks listings"
    split_listings "$TMP/items" "$TMP/listings" <"$TMP/bundle/listings"
    # As plan says it: whether a receive would send the listings at all.
    if [ -n "$(reusable | head -n 1)" ]; then echo "reuse yes"; fi
    need_answer "$TMP/listings" "$TMP/have"
}

cmd_item() {
    receiving "${1:-}"
    case ${3:-} in ''|zstd|delta|delta.zstd) ;; *) die "unknown codec '${3:-}'" ;; esac
    name=${2:-}
    case $name in ''|.*|*/*) die "bad item name '$name'" ;; esac
    said=$T/got/.$name.item.$$
    take "$name" "${3:-}" "$said" || {
        why=$(why_refused "$said")
        rm -f "$said"
        die "$why"
    }
    rm -f "$said"
}

# take_item NAME CODEC: stdin is item NAME of the manifest being received in
# $T, in the form CODEC says: unpack it out of sight, hash the bytes as they
# come, audit and list the tree; refuse it (die) if it is not the signed one.
take_item() {
    name=$1 codec=$2
    case $name in ''|.*|*/*) die "bad item name '$name'" ;; esac
    awk -v n="$name" '{ k = $1; sub(/.*\//, "", k) } k == n { f = 1 } END { exit !f }' \
        "$T/items" || die "item $name is not in the manifest being received"
    dest=$T/unpack/$name
    mkdir "$dest" || die "item $name was sent twice"
    got=$T/got/$name
    delta=
    case $codec in delta*) delta=1 ;; esac
    if [ -n "$delta" ]; then
        # Only the files this host lacks, compressed: assembled with the rest
        # from the store and held to the item's signed listing.
        [ -f "$T/listings/$name.sums" ] || die "item $name: a delta needs its listing first"
        : >"$got.delta"
    fi
    # Every file the hashing side writes exists before it starts (so that a
    # full disk stops this script here): once it waits on the fifo, nothing
    # may fail before tee opens the other end.
    if ! { : >"$got.sha.part" && : >"$got.err2"; } 2>/dev/null; then
        store_full && die "disk full on $STORE: item $name does not fit"
        die "cannot write in $T"
    fi
    mkfifo "$got.hash"
    { openssl dgst -sha256 -r | cut -c1-64; } <"$got.hash" >>"$got.sha.part" 2>>"$got.err2" &
    hashing=$!
    # One pass over the bytes as sent: hashed and unpacked together; what tar
    # leaves unread after the end of the archive is still hashed. Anything tar
    # says (a stripped leading '/', a refused '..' member or link) refuses
    # the item.
    # tar's exit status travels in memory (on a full disk, a file saying it
    # could not be written); it, not a message, decides.
    # shellcheck disable=SC2086 # TAR_SAFE is a list of options
    tar_status=$(tee "$got.hash" | unpack_stream "$codec" | {
        s=0
        tar -xf - -C "$dest" $TAR_SAFE 2>"$got.err" >/dev/null || s=$?
        cat >/dev/null
        echo "$s"
    }) || :
    wait "$hashing" || :
    rm -f "$got.hash"
    { cat "$got.err2" >>"$got.err"; } 2>/dev/null || :
    if [ ! -s "$got.sha.part" ] || store_full ||
            grep -q "No space left" "$got.err" 2>/dev/null; then
        die "disk full on $STORE: item $name does not fit"
    fi
    mv "$got.sha.part" "$got.sha"
    # The bytes first: a corrupted or substituted archive is refused as such,
    # whatever tar made of it. Compressed, the bytes are the compressed
    # archive the manifest signs the hash of. (A delta's files are checked
    # one by one, below.)
    if [ -z "$delta" ]; then
        column=2
        [ "$codec" != zstd ] || column=6
        want=$(awk -v n="$name" -v c="$column" '{ k = $1; sub(/.*\//, "", k) } k == n { print $c }' \
            "$T/items")
        [ "$(cat "$got.sha")" = "$want" ] ||
            die "item $name: content hash does not match the manifest"
    fi
    # A whole item is on its way to the disk at once, while it is audited
    # and checked (a delta once its files are linked in, below).
    flushing=
    if [ -z "$delta" ]; then flush_tree "$dest" & flushing=$!; fi
    # A whole item whose listing came along: its bytes are the signed
    # archive's, so its tree is held to the listing's shape (names, kinds,
    # modes, link targets) without hashing every file again; taken while it
    # is audited.
    shaping=
    if [ -z "$delta" ] && [ -f "$T/listings/$name.sums" ]; then
        shape "$dest" >"$got.shape" & shaping=$!
    fi
    # Audit it now, while the next item is on its way; whatever tar said, its
    # exit status alone refuses the item too.
    audit_item "$name" "$dest" >"$got.refused"
    if [ -n "$shaping" ]; then wait "$shaping" || :; fi
    if [ ! -s "$got.refused" ] && [ "$tar_status" != 0 ]; then
        echo "cannot unpack (tar exit status ${tar_status:-unknown})" >"$got.refused"
    fi
    if [ ! -s "$got.refused" ] && [ -n "$delta" ]; then
        # Unsigned: before anything is linked or copied into it, every entry
        # of the delta must be one its signed listing names, of the same
        # kind (a directory as a directory, a file with its mode, a symlink
        # with its target), so that no link made below can pass through a
        # symlink or land anywhere but in $dest.
        shape "$dest" >"$got.shape"
        sed 's/^\([fx]\) [0-9a-f]* /\1 - /' "$T/listings/$name.sums" |
            LC_ALL=C awk 'NR == FNR { listed[$0] = 1; next }
                !($0 in listed) { print; exit 1 }' - "$got.shape" >"$got.stray" ||
            echo "the delta holds what its signed listing does not: $(cut -c1-200 "$got.stray")" \
                >"$got.refused"
    fi
    if [ ! -s "$got.refused" ] && [ -n "$delta" ]; then
        assemble "$dest" "$T/listings/$name.sums"
    fi
    if [ ! -s "$got.refused" ] && [ -n "$delta" ]; then
        # Held to its signed listing now, the files it links from the store
        # by their inode (hold_assembled): refused, it is forgotten and the
        # whole item can come instead (a store file written since it landed
        # assembles a wrong item, every time).
        hold_assembled "$dest" "$T/listings/$name.sums" >"$got.refused"
        if [ -s "$got.refused" ]; then
            echo "its file listing does not match the manifest once assembled:" \
                "$(cat "$got.refused") (a store file it links may have changed: run inv verify)" \
                >"$got.refused.why"
            mv -f "$got.refused.why" "$got.refused"
        else
            cp "$T/listings/$name.sums" "$got.sums"
            flush_tree "$dest"
        fi
    elif [ ! -s "$got.refused" ]; then
        # Commit holds the listing to the manifest. A whole item whose
        # listing came along is held to its shape (its bytes are the signed
        # archive's); without one (a small item), every file is hashed here.
        if [ -n "$shaping" ]; then
            sed 's/^\([fx]\) [0-9a-f]* /\1 - /' "$T/listings/$name.sums" | LC_ALL=C sort |
                cmp -s - "$got.shape" ||
                echo "what was unpacked is not what its listing says" >"$got.refused"
            cp "$T/listings/$name.sums" "$got.sums.part"
        else
            listing "$dest" >"$got.sums.part"
        fi
        mv "$got.sums.part" "$got.sums"
    fi
    if [ -n "$flushing" ]; then wait "$flushing" || :; fi
    : >"$got.done"
    if [ -s "$got.refused" ]; then die "item $name: $(cat "$got.refused")"; fi
}

cmd_verify() {
    drift=0 n=0
    new_tmp
    # Generation records first: an empty or cut one is corrupt.
    : >"$TMP/corrupt"
    for g in "$GENS"/*; do
        k=$(basename "$g"); case $k in ''|*[!0-9]*) continue ;; esac
        if ! generation_sound "$k"; then echo "corrupt generation $k" >>"$TMP/corrupt"; continue; fi
        awk 'NR == 1 { v = $2 } $1 == "item" { print $2, $6, v }' "$g/manifest"
    done | sort -u >"$TMP/items"
    if [ -s "$TMP/corrupt" ]; then cat "$TMP/corrupt"; drift=1; fi
    while read -r p lsha format; do
        n=$((n + 1))
        name=$(basename "$p")
        if [ ! -d "$p" ]; then
            echo "missing $p"; drift=1
        elif [ ! -f "$SUMS/$name.sums" ]; then
            echo "unrecorded $p"; drift=1
        elif [ "$(openssl dgst -sha256 -r <"$SUMS/$name.sums" | cut -c1-64)" != "$lsha" ]; then
            echo "drift $p its recorded listing is not the one the manifest signs"; drift=1
        elif ! listing_as "$format" "$p" | cmp -s - "$SUMS/$name.sums"; then
            echo "drift $p $(listing_as "$format" "$p" | diff "$SUMS/$name.sums" - |
                grep '^[<>]' | head -n 3 | tr '\n' ' ')"
            drift=1
        else
            echo "ok $p"
        fi
    done <"$TMP/items"
    # Managed configuration files changed by hand since the last activation.
    config_drift >"$TMP/config"
    if [ -s "$TMP/config" ]; then sed 's/^/config-/' "$TMP/config"; drift=1; fi
    echo "checked $n"
    [ "$drift" = 0 ] || exit 2
}

