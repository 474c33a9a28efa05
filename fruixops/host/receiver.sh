#!/bin/sh
# fruixops receiver: the only fruixops code that runs on a host.
#
# POSIX sh, tar, openssl (3.0+) and base utilities; no Python, no agent. It
# trusts nothing the controller says without checking it here: a manifest is
# accepted only when its Ed25519 signature verifies against a key in
# $STATE/trusted/, it names this host, has not expired and its serial is above
# the last one accepted; an item lands in /frx/store only when its archive's
# sha256 and size match that manifest, by rename from a hidden temporary
# directory on the same file system. Symlinks are switched by renaming a new
# link over the old one.
#
# Commands (stdin, where used, carries a tar "bundle"):
#   plan               bundle: manifest, manifest.sig. Verify; print the items
#                      this host lacks and its state. Changes nothing.
#   receive [--trial] [--deployer WHO]
#                      stdin: the manifest's lines, then "sig BASE64". Take the
#                      lock, verify, print "ready PID", then wait for "commit"
#                      while the items arrive (item, below); check and land
#                      them, record generation N+1 and make it current
#                      (--trial: the one-shot next boot instead).
#   item PID NAME [zstd]
#                      stdin: one item's archive (with "zstd": its compressed
#                      form), for the receive PID in progress: unpacked out of
#                      sight while the sha256 of the bytes as sent is taken
#                      (streamed, never stored whole); it must be the
#                      manifest's for that form.
#   listings PID       stdin: file listings of items being received, each after
#                      a line "=NAME" (for big items: listing them here would
#                      hash every file a second time). Each must hash to the
#                      manifest's listing sha256; an item sent without one is
#                      listed here, and that must hash to it too.
#   confirm N          make generation N current (after a good trial boot).
#   rollback [N]       make generation N (default: the rollback one) current.
#   status             print the state: current, rollback, booted, next-boot,
#                      and one line per generation.
#   verify             re-hash every item the generations refer to against the
#                      listing recorded when it landed; exit 2 on any drift.
#   gc KEEP [--dry-run] [--pin N]...
#                      delete generations beyond the newest KEEP (never the
#                      current, rollback, next-boot, booted or pinned ones), then
#                      the store items no remaining generation refers to.
#   trust-init         bundle: NAME.pem files. Trust them, only if this host
#                      trusts no key yet (first contact).
#   trust-add NAME     stdin: a PEM public key. Trust it.
#   trust-remove NAME  stop trusting key NAME (never the last one).
#   set-host-name NAME record the inventory name this host answers to (once).
#
# Exit status: 0 done; 2 refused or failed (one line on stderr says why,
# nothing changed); 3 another fruixops holds the lock (it is named).
set -eu
umask 022

STORE=/frx/store
GCROOTS=/frx/var/fruix/gcroots
SUMS=/frx/var/fruix/items
SYSTEM=/var/lib/fruix/system
GENS=$SYSTEM/generations
STATE=/var/lib/fruix/fruixops
LOCKDIR=/run/fruixops
LOCK=$LOCKDIR/lock
TMP=
HOLDING=

die() { echo "refused: $*" >&2; exit 2; }

# A full store file system fails whichever step writes next (tar, sort, cut,
# mkdir...), each in its own words: any failure is explained here, once.
store_full() { df -Pk "$STORE" 2>/dev/null | awk 'NR == 2 { exit !($4 < 1024) }'; }

cleanup() {
    status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ] && store_full; then
        echo "refused: disk full on $STORE" >&2
    fi
    if [ -n "$TMP" ]; then chmod -R u+w "$TMP" 2>/dev/null || :; rm -rf "$TMP"; fi
    if [ -n "$HOLDING" ]; then rm -f "$LOCK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- links ----------------------------------------------------------------

# GNU mv needs -T and BSD mv needs -h to rename over a symlink to a directory
# instead of moving into it.
if mv --help 2>&1 | grep -q -- '-T'; then MVNOFOLLOW=-T; else MVNOFOLLOW=-h; fi

# replace_link TARGET LINK: point LINK at TARGET by renaming a new link over it.
replace_link() {
    new="$(dirname "$2")/.$(basename "$2").new.$$"
    rm -f "$new"
    ln -s "$1" "$new"
    mv -f "$MVNOFOLLOW" "$new" "$2"
}

# --- lock -------------------------------------------------------------------

# One fruixops at a time. The lock is a symlink whose target names the holder
# (pid, since, who); it lives on /run, so a reboot releases it. A lock whose
# pid is gone is stale and is taken over under a short recovery lock, after
# checking again that it is still the same stale lock.
lock() {
    mkdir -p "$LOCKDIR"
    who=$(printf '%s' "${1:-?}" | tr -c 'A-Za-z0-9@._:-' '_')
    holder="pid=$$,since=$(date +%s),by=$who,cmd=$CMD"
    if ln -s "$holder" "$LOCK" 2>/dev/null; then HOLDING=1; return 0; fi
    old=$(readlink "$LOCK" 2>/dev/null) || old=
    oldpid=${old#pid=}; oldpid=${oldpid%%,*}
    case $oldpid in ''|*[!0-9]*) oldpid= ;; esac
    if [ -n "$oldpid" ] && ! kill -0 "$oldpid" 2>/dev/null; then
        if mkdir "$LOCK.recover" 2>/dev/null; then
            if [ "$(readlink "$LOCK" 2>/dev/null)" = "$old" ]; then
                rm -f "$LOCK"
                echo "note: recovered a stale lock ($old)" >&2
            fi
            rmdir "$LOCK.recover"
            if ln -s "$holder" "$LOCK" 2>/dev/null; then HOLDING=1; return 0; fi
            old=$(readlink "$LOCK" 2>/dev/null) || old=
        fi
    fi
    echo "locked: another deploy holds this host ($old)" >&2
    exit 3
}

# --- bundles and manifests -------------------------------------------------------

new_tmp() {
    mkdir -p "$STORE"
    TMP=$STORE/.fruixops-tmp.$$
    rm -rf "$TMP"
    mkdir -m 700 "$TMP"
}

# Unpack the bundle on stdin into $TMP/bundle.
read_bundle() {
    mkdir "$TMP/bundle"
    if ! err=$(tar -xf - -C "$TMP/bundle" 2>&1); then
        case $err in
            *"No space left"*) die "disk full on $STORE: the bundle does not fit" ;;
        esac
        die "cannot read the bundle: $(echo "$err" | tail -n 1)"
    fi
    if [ ! -f "$TMP/bundle/manifest" ] || [ ! -f "$TMP/bundle/manifest.sig" ]; then
        die "the bundle lacks manifest or manifest.sig"
    fi
}

# field NAME FILE: the value of a header line "NAME value" of a manifest.
field() { awk -v k="$1" '$1 == k && NF == 2 { print $2; exit }' "$2"; }

# Verify $TMP/bundle/manifest; on success set SIGNER, M_* and write
# $TMP/items (path sha256 size refs listing-sha256 zstd-sha256 per line).
verify_manifest() {
    m=$TMP/bundle/manifest
    SIGNER=
    for key in "$STATE"/trusted/*.pem; do
        [ -f "$key" ] || continue
        if openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$m" \
                -sigfile "$TMP/bundle/manifest.sig" >/dev/null 2>&1; then
            SIGNER=$(basename "$key" .pem)
            break
        fi
    done
    [ -n "$SIGNER" ] || die "manifest signature does not verify against any trusted key"
    # Structure: same rules as the controller's parser, checked again here.
    awk '
        NR == 1 { if ($0 != "fruixops-manifest 2") bad = "unknown manifest format"; next }
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
        NF != 2 { bad = "bad line " NR }
        END { if (!ended) bad = "no end line"; if (bad != "") { print bad; exit 1 } }
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
    [ "$now" -le "$M_EXPIRES" ] || die "manifest expired at $M_EXPIRES (now $now)"
    last=$(cat "$STATE/last-serial" 2>/dev/null) || last=0
    [ "$M_SERIAL" -gt "$last" ] ||
        die "manifest serial $M_SERIAL is not above the last accepted ($last): replay refused"
    awk '$1 == "item" { print $2, $3, $4, $5, $6, $7 }' "$m" >"$TMP/items"
    grep -q "^$M_SYSTEM " "$TMP/items" || die "the system item is not in the manifest"
}

# --- items ---------------------------------------------------------------------


# land_item PATH SHA ZSHA LISTING: check what `item` unpacked and audited for
# PATH against the manifest (the bytes received hash to the signed sha256 of
# the form they came in), and its listing, and move it into the store.
land_item() {
    name=$(basename "$1")
    got=$TMP/got/$name
    [ -f "$got.done" ] || die "item $name was not sent and is not in the store"
    case $(cat "$got.sha") in
        "$2"|"$3") ;;
        *) die "item $name: content hash does not match the manifest" ;;
    esac
    [ ! -s "$got.refused" ] || die "item $name: $(cat "$got.refused")"
    if [ -e "$1" ]; then return 0; fi
    dest=$TMP/unpack/$name
    sums=$TMP/listings/$name.sums
    if [ ! -f "$sums" ]; then
        sums=$got.sums
        listing "$dest" >"$sums"
    fi
    [ "$(openssl dgst -sha256 -r <"$sums" | cut -c1-64)" = "$4" ] ||
        die "item $name: its file listing does not match the manifest"
    # The listing first: an item in the store always has one.
    mkdir -p "$SUMS"
    mv -f "$sums" "$SUMS/.$name.sums.new"
    mv -f "$SUMS/.$name.sums.new" "$SUMS/$name.sums"
    chmod u+w "$dest"          # the item root is renamed, then sealed
    mv "$dest" "$1"
    chmod a-w "$1"
    LANDED=$((LANDED + 1))
}

# audit_item NAME DIR: why an unpacked item must be refused, if it must.
audit_item() {
    if [ -s "$got.err" ]; then
        case $(cat "$got.err") in
            *"No space left"*) echo "disk full on $STORE: the item does not fit" ;;
            *"Removing leading"*|*"contains '..'"*|*"contains \`..'"*)
                echo "archive has an absolute or '..' member" ;;
            *) echo "cannot unpack: $(head -n 1 "$got.err")" ;;
        esac
        return
    fi
    if [ -n "$(find "$2" \( -type b -o -type c -o -type p -o -type s \
            -o -perm -4000 -o -perm -2000 \) -print | head -n 1)" ]; then
        echo "device node, fifo, socket or setuid/setgid file"
        return
    fi
    # Store items are read-only as they come (canonical archives carry no
    # write bit); a writable entry is refused rather than fixed up.
    if [ -n "$(find "$2" -mindepth 1 ! -type l -perm -200 -print | head -n 1)" ]; then
        echo "writable entry in a store item"
        return
    fi
    # A hard link must have all its names inside the item: a link to a file
    # elsewhere on this file system shows as more links than names here.
    if find "$2" -type f -links +1 -exec ls -il {} + |
            awk '{ n[$1] = $3; c[$1]++ } END { for (i in n) if (c[i] != n[i]) bad = 1; exit !bad }'
    then
        echo "hard link to a file outside the item"
    fi
}

# listing DIR: every entry of an item tree, sorted: "f SHA256 path",
# "l TARGET path", "d - path". What verify compares against.
listing() {
    (
        cd "$1"
        find . -type f -exec openssl dgst -sha256 -r {} + |
            awk '{ h = $1; sub(/^[0-9a-f]+ \*?/, ""); print "f " h " " $0 }'
        find . -type l | while IFS= read -r l; do
            printf 'l %s %s\n' "$(readlink "$l")" "$l"
        done
        find . -type d | sed 's/^/d - /'
    ) | LC_ALL=C sort
}

# --- generations ---------------------------------------------------------------

gen_of() { # LINK -> generation number it points at, or empty
    t=$(readlink "$1" 2>/dev/null) || return 0
    basename "$t"
}

last_generation() {
    n=0
    for g in "$GENS"/*; do
        g=$(basename "$g")
        case $g in ''|*[!0-9]*) continue ;; esac
        [ "$g" -gt "$n" ] && n=$g
    done
    echo "$n"
}

# make_current N: current -> N; rollback -> what was current; gcroots follow.
make_current() {
    old=$(gen_of "$SYSTEM/current")
    mkdir -p "$GCROOTS"
    if [ -n "$old" ] && [ "$old" != "$1" ]; then
        replace_link "generations/$old" "$SYSTEM/rollback"
        replace_link "$(readlink "$GENS/$old/closure")" "$GCROOTS/rollback-system"
    fi
    replace_link "generations/$1" "$SYSTEM/current"
    replace_link "$(readlink "$GENS/$1/closure")" "$GCROOTS/current-system"
    rm -f "$SYSTEM/next-boot"
}

generation_complete() { # N: every item its manifest lists is in the store
    absent=$(awk '$1 == "item" { print $2 }' "$GENS/$1/manifest" | while read -r p; do
        [ -d "$p" ] || echo "$p"
    done)
    [ -z "$absent" ]
}

# --- commands -------------------------------------------------------------

cmd_plan() {
    new_tmp
    read_bundle
    verify_manifest
    print_state
    print_generations
    if command -v zstd >/dev/null 2>&1; then echo "zstd yes"; else echo "zstd no"; fi
    while read -r p _; do
        [ -d "$p" ] || echo "missing $p"
    done <"$TMP/items"
    echo "verified $SIGNER"
}

# Holding the lock, no other receiver runs: temporary files are leftovers of
# killed ones (none of them is visible as a store item or a generation).
clean_leftovers() {
    for old in "$STORE"/.fruixops-tmp.* "$STORE"/.gc-* "$GENS"/.new.* "$GENS"/.gc.* \
            "$SUMS"/.*.sums.new \
            "$SYSTEM"/.*.new.* "$GCROOTS"/.*.new.* "$STATE"/.last-serial.new; do
        if [ -e "$old" ] || [ -L "$old" ]; then chmod -R u+w "$old" 2>/dev/null || :; rm -rf "$old"; fi
    done
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
    lock "$deployer"
    clean_leftovers
    new_tmp
    mkdir "$TMP/bundle" "$TMP/unpack" "$TMP/got"
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
    echo "ready $$"
    # The items arrive now, each on a channel of its own (`item`).
    IFS= read -r line || line=
    [ "$line" = commit ] || die "the controller gave up before committing"
    LANDED=0
    while read -r p sha _ _ lsha zsha; do
        [ -d "$p" ] || land_item "$p" "$sha" "$zsha" "$lsha"
    done <"$TMP/items"
    # Every item is in: from here this manifest can never be accepted again.
    printf '%s\n' "$M_SERIAL" >"$STATE/.last-serial.new"
    mv -f "$STATE/.last-serial.new" "$STATE/last-serial"
    n=$(($(last_generation) + 1))
    g=$GENS/.new.$$
    mkdir -p "$GENS"
    rm -rf "$g"
    mkdir "$g"
    cp "$TMP/bundle/manifest" "$TMP/bundle/manifest.sig" "$g/"
    ln -s "$M_SYSTEM" "$g/closure"
    {
        echo "received=$(date +%s)"
        echo "deployer=$deployer"
        echo "signer=$SIGNER"
        echo "base=$M_BASE"
        echo "version-label=$M_LABEL"
        echo "serial=$M_SERIAL"
    } >"$g/provenance"
    mv "$g" "$GENS/$n"
    mkdir -p "$GCROOTS"
    replace_link "$M_SYSTEM" "$GCROOTS/system-$n"
    if [ -n "$trial" ]; then
        replace_link "generations/$n" "$SYSTEM/next-boot"
    else
        make_current "$n"
    fi
    echo "landed $LANDED"
    echo "generation $n"
}

cmd_confirm() {
    n=${1:-}
    case $n in ''|*[!0-9]*) die "confirm needs a generation number" ;; esac
    lock "${2:-}"
    [ -d "$GENS/$n" ] || die "no generation $n"
    generation_complete "$n" || die "generation $n is incomplete"
    make_current "$n"
    echo "current $n"
}

cmd_rollback() {
    lock "${2:-}"
    n=${1:-}
    if [ -z "$n" ]; then
        n=$(gen_of "$SYSTEM/rollback")
        [ -n "$n" ] || die "no rollback generation"
    fi
    case $n in *[!0-9]*) die "bad generation number '$n'" ;; esac
    [ -d "$GENS/$n" ] || die "no generation $n"
    generation_complete "$n" || die "generation $n is incomplete; not switching to it"
    make_current "$n"
    echo "current $n"
}

# unpack_stream CODEC: stdin as sent -> the item's archive bytes.
unpack_stream() {
    if [ "$1" = zstd ]; then zstd -dcq; else cat; fi
}

# receiving PID: check that receive PID holds the lock and waits for items;
# set T to its temporary directory.
receiving() {
    case $1 in ''|*[!0-9]*) die "needs the receive's pid" ;; esac
    T=$STORE/.fruixops-tmp.$1
    holder=$(readlink "$LOCK" 2>/dev/null) || holder=
    case $holder in "pid=$1,"*) ;; *) die "no receive $1 holds the lock" ;; esac
    [ -d "$T/got" ] || die "receive $1 is not ready for items"
}

cmd_listings() {
    receiving "${1:-}"
    mkdir "$T/listings.part" || die "listings sent twice"
    # Only names of items in the manifest; each listing ends at the next name.
    LC_ALL=C awk -v dir="$T/listings.part" '
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
    ' "$T/items" - 2>"$T/listings.err" || die "listings: $(head -n 1 "$T/listings.err")"
    mv "$T/listings.part" "$T/listings"
}

cmd_item() {
    pid=${1:-} name=${2:-} codec=${3:-}
    receiving "$pid"
    case $codec in ''|zstd) ;; *) die "unknown codec '$codec'" ;; esac
    case $name in ''|.*|*/*) die "bad item name '$name'" ;; esac
    awk -v n="$name" '{ k = $1; sub(/.*\//, "", k) } k == n { f = 1 } END { exit !f }' \
        "$T/items" || die "item $name is not in the manifest being received"
    dest=$T/unpack/$name
    mkdir "$dest" || die "item $name was sent twice"
    got=$T/got/$name
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
    tee "$got.hash" | unpack_stream "$codec" | {
        tar -xf - -C "$dest" --no-same-owner 2>"$got.err" ||
            { echo "tar: exit status $?" >>"$got.err"; } 2>/dev/null || :
        cat >/dev/null
    }
    wait "$hashing" || :
    rm -f "$got.hash"
    { cat "$got.err2" >>"$got.err"; } 2>/dev/null || :
    if [ ! -s "$got.sha.part" ] || grep -q "No space left" "$got.err" 2>/dev/null; then
        die "disk full on $STORE: item $name does not fit"
    fi
    mv "$got.sha.part" "$got.sha"
    # The bytes first: a corrupted or substituted archive is refused as such,
    # whatever tar made of it. Compressed, the bytes are the compressed
    # archive the manifest signs the hash of.
    column=2
    [ "$codec" != zstd ] || column=6
    want=$(awk -v n="$name" -v c="$column" '{ k = $1; sub(/.*\//, "", k) } k == n { print $c }' \
        "$T/items")
    [ "$(cat "$got.sha")" = "$want" ] || die "item $name: content hash does not match the manifest"
    # Audit it now, while the next item is on its way.
    audit_item "$name" "$dest" >"$got.refused"
    : >"$got.done"
    if [ -s "$got.refused" ]; then die "item $name: $(cat "$got.refused")"; fi
}

print_state() {
    echo "host-name $(cat "$STATE/host-name" 2>/dev/null || echo -)"
    echo "last-serial $(cat "$STATE/last-serial" 2>/dev/null || echo 0)"
    echo "current $(gen_of "$SYSTEM/current")"
    echo "rollback $(gen_of "$SYSTEM/rollback")"
    echo "next-boot $(gen_of "$SYSTEM/next-boot")"
    echo "booted $(readlink /run/current-system 2>/dev/null || :)"
    if [ -L "$LOCK" ]; then echo "lock $(readlink "$LOCK")"; fi
}

cmd_status() {
    print_state
    print_generations
}

print_generations() {
    for g in "$GENS"/*; do
        n=$(basename "$g")
        case $n in ''|*[!0-9]*) continue ;; esac
        p=$g/provenance
        printf 'generation %s closure=%s size=%s received=%s deployer=%s signer=%s base=%s version-label=%s\n' \
            "$n" "$(readlink "$g/closure")" \
            "$(awk '$1 == "item" { s += $4 } END { print s + 0 }' "$g/manifest")" \
            "$(sed -n 's/^received=//p' "$p")" "$(sed -n 's/^deployer=//p' "$p")" \
            "$(sed -n 's/^signer=//p' "$p")" "$(sed -n 's/^base=//p' "$p")" \
            "$(sed -n 's/^version-label=//p' "$p")"
    done
}

cmd_verify() {
    drift=0 n=0
    new_tmp
    for m in "$GENS"/*/manifest; do
        [ -f "$m" ] && awk '$1 == "item" { print $2 }' "$m"
    done | sort -u >"$TMP/items"
    while read -r p; do
        n=$((n + 1))
        name=$(basename "$p")
        if [ ! -d "$p" ]; then
            echo "missing $p"; drift=1
        elif [ ! -f "$SUMS/$name.sums" ]; then
            echo "unrecorded $p"; drift=1
        elif ! listing "$p" | cmp -s - "$SUMS/$name.sums"; then
            echo "drift $p $(listing "$p" | diff "$SUMS/$name.sums" - | grep '^[<>]' |
                head -n 3 | tr '\n' ' ')"
            drift=1
        else
            echo "ok $p"
        fi
    done <"$TMP/items"
    echo "checked $n"
    [ "$drift" = 0 ] || exit 2
}

# size_of DIR: the bytes of the regular files below DIR.
size_of() {
    find "$1" -type f -exec ls -ln {} + | awk '{ s += $5 } END { print s + 0 }'
}

cmd_gc() {
    keep=${1:-}
    case $keep in ''|*[!0-9]*) die "gc needs the number of generations to keep" ;; esac
    shift
    dry='' pins=' '
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) dry=1 ;;
            --pin) shift; case ${1:-} in ''|*[!0-9]*) die "--pin needs a number" ;; esac
                   pins="$pins$1 " ;;
            *) die "gc: unknown option '$1'" ;;
        esac
        shift
    done
    lock gc
    clean_leftovers
    new_tmp
    booted=$(readlink /run/current-system 2>/dev/null) || booted=
    protect=" $(gen_of "$SYSTEM/current") $(gen_of "$SYSTEM/rollback") $(gen_of "$SYSTEM/next-boot")$pins"
    # Newest first; the first KEEP stay, as do the protected ones.
    for g in "$GENS"/*; do
        n=$(basename "$g"); case $n in ''|*[!0-9]*) continue ;; esac; echo "$n"
    done | sort -rn >"$TMP/gens"
    i=0
    : >"$TMP/doomed"
    while read -r n; do
        i=$((i + 1))
        [ "$i" -le "$keep" ] && continue
        case $protect in *" $n "*) echo "keep-generation $n protected"; continue ;; esac
        if [ -n "$booted" ] && [ "$(readlink "$GENS/$n/closure")" = "$booted" ]; then
            echo "keep-generation $n booted"; continue
        fi
        echo "$n" >>"$TMP/doomed"
    done <"$TMP/gens"
    # Generations go first, each by one rename out of sight: no generation
    # that remains can refer to an item deleted below.
    while read -r n; do
        echo "delete-generation $n"
        [ -n "$dry" ] && continue
        mv "$GENS/$n" "$GENS/.gc.$n"
        rm -f "$GCROOTS/system-$n"
        rm -rf "$GENS/.gc.$n"
    done <"$TMP/doomed"
    # Live: every item of every generation left (for a dry run, as if deleted).
    for g in "$GENS"/*; do
        n=$(basename "$g"); case $n in ''|*[!0-9]*) continue ;; esac
        grep -qx "$n" "$TMP/doomed" && continue
        awk '$1 == "item" { print $2 }' "$g/manifest"
    done | sort -u >"$TMP/live"
    freed=0
    for p in "$STORE"/*; do
        [ -d "$p" ] || continue
        grep -qx "$p" "$TMP/live" && continue
        size=$(size_of "$p")
        echo "delete-item $p $size"
        freed=$((freed + size))
        [ -n "$dry" ] && continue
        name=$(basename "$p")
        chmod u+w "$p"
        mv "$p" "$STORE/.gc-$name"
        rm -f "$SUMS/$name.sums"
        chmod -R u+w "$STORE/.gc-$name"
        rm -rf "$STORE/.gc-$name"
    done
    echo "freed $freed${dry:+ (dry run)}"
}

check_key_name() {
    case $1 in ''|.*|*[!A-Za-z0-9._-]*) die "bad key name '$1'" ;; esac
}

# install_key NAME FILE: validate a PEM public key and add it to trusted/.
install_key() {
    check_key_name "$1"
    openssl pkey -pubin -in "$2" -noout 2>/dev/null || die "key $1 is not a PEM public key"
    mkdir -p "$STATE/trusted"
    cp "$2" "$STATE/trusted/.$1.pem.new"
    mv -f "$STATE/trusted/.$1.pem.new" "$STATE/trusted/$1.pem"
    echo "trusted $1"
}

trusted_count() { find "$STATE/trusted" -name '*.pem' 2>/dev/null | grep -c . || :; }

cmd_trust_init() {
    lock "trust-init"
    new_tmp
    mkdir "$TMP/keys"
    tar -xf - -C "$TMP/keys" || die "cannot read the key bundle"
    if [ "$(trusted_count)" -gt 0 ]; then
        echo "already-trusting $(trusted_count)"
        return 0
    fi
    for k in "$TMP"/keys/*.pem; do
        [ -f "$k" ] || die "no keys in the bundle"
        install_key "$(basename "$k" .pem)" "$k"
    done
}

cmd_trust_add() {
    lock "trust-add"
    new_tmp
    cat >"$TMP/key.pem"
    install_key "${1:-}" "$TMP/key.pem"
}

cmd_trust_remove() {
    lock "trust-remove"
    check_key_name "${1:-}"
    [ -f "$STATE/trusted/$1.pem" ] || die "key $1 is not trusted here"
    [ "$(trusted_count)" -gt 1 ] || die "refusing to remove the last trusted key"
    rm -f "$STATE/trusted/$1.pem"
    echo "untrusted $1"
}

cmd_set_host_name() {
    case ${1:-} in ''|*[!A-Za-z0-9._+-]*) die "bad host name '${1:-}'" ;; esac
    mkdir -p "$STATE"
    if [ -f "$STATE/host-name" ]; then
        [ "$(cat "$STATE/host-name")" = "$1" ] ||
            die "this host is recorded as '$(cat "$STATE/host-name")', not '$1'"
        return 0
    fi
    printf '%s\n' "$1" >"$STATE/.host-name.new"
    mv -f "$STATE/.host-name.new" "$STATE/host-name"
}

CMD=${1:-}
[ $# -gt 0 ] && shift
case $CMD in
    plan) cmd_plan ;;
    receive) cmd_receive "$@" ;;
    item) cmd_item "$@" ;;
    listings) cmd_listings "$@" ;;
    confirm) cmd_confirm "$@" ;;
    rollback) cmd_rollback "$@" ;;
    status) cmd_status ;;
    verify) cmd_verify ;;
    gc) cmd_gc "$@" ;;
    trust-init) cmd_trust_init ;;
    trust-add) cmd_trust_add "$@" ;;
    trust-remove) cmd_trust_remove "$@" ;;
    set-host-name) cmd_set_host_name "$@" ;;
    *) die "unknown command '$CMD' (plan receive item listings confirm rollback status verify gc trust-init trust-add trust-remove set-host-name)" ;;
esac
