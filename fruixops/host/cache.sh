# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): items that come from
# elsewhere than the controller's SSH channel -- an HTTP cache the host pulls
# from, or a bundle file carried in. Neither is trusted: an item from either
# goes through take_item, exactly as a pushed one, and must hash to the
# signed manifest.
#
# A cache holds content-addressed objects, each named by the sha256 the
# manifest signs for it: objects/SHA.tar (the canonical archive),
# objects/ZSHA.tar.zst (its zstd form), objects/LSHA.listing (its file
# listing); and deltas/DSHA.tar[.zst], named by their own sha256, whose files
# are held to the signed listing. A bundle is a tar of "fruixops-bundle",
# hosts/NAME/manifest and hosts/NAME/manifest.sig per host, and the same
# objects.

# fetch_url URL: the body of URL on stdout; fails on any HTTP error, and on
# a cache that stalls (then the item is pushed instead, before the
# controller's timeout for the pull). FreeBSD base has fetch(1);
# curl or wget where that is what the host has.
fetch_url() {
    if command -v fetch >/dev/null 2>&1; then
        fetch -q -T 30 -o - "$1"
    elif command -v curl >/dev/null 2>&1; then
        # (A cache behind a CDN or a bucket may redirect, as fetch and wget
        # follow; under 64 KiB/s for a minute is a stall.)
        curl -fsSL --max-redirs 5 --connect-timeout 30 --speed-limit 65536 --speed-time 60 "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q --tries=1 -T 30 -O - "$1"
    else
        echo "no fetch(1), curl or wget on this host" >&2
        return 127
    fi
}

# fetcher: the name of the tool fetch_url uses (nothing if there is none).
fetcher() {
    for t in fetch curl wget; do
        if command -v "$t" >/dev/null 2>&1; then echo "$t"; return 0; fi
    done
}

# item_line NAME: "path sha size refs lsha zsha" of item NAME in $T/items.
item_line() {
    awk -v n="$1" '{ k = $1; sub(/.*\//, "", k) } k == n { print; exit }' "$T/items"
}

# forget_item NAME: what a refused take_item of NAME left in $T, so that the
# item can be taken again another way (pushed by the controller). Its
# listing, if one came, stays: it hashed to the signed one.
forget_item() {
    remove_tree "$T/unpack/$1"
    rm -f "$T/got/$1".*
}

# cache_url URL: URL is one this host may fetch from.
cache_url() {
    case $1 in http://?*/|https://?*/) ;; *) die "bad cache url '$1' (http:// or https://, ending in /)" ;; esac
    [ -n "$(fetcher)" ] || die "no fetch(1), curl or wget on this host to pull with"
}

# pull PID NAME URL FORM [DSHA]: item NAME of receive PID, from the cache at
# URL (which ends in /), in FORM: "zstd" (objects/ZSHA.tar.zst), "tar"
# (objects/SHA.tar), or a delta DSHA ("delta", "delta.zstd":
# deltas/DSHA.tar[.zst], the contents this host said it lacks, whose sha256
# the controller names; its files are then held to the signed listing one by
# one, as a sent delta's). A big whole item's listing comes first, when the
# cache has it, so that its tree is held to the listing's shape instead of
# hashed again. Prints "pulled NAME FORM", and "listing" after it when the
# listing came too. A missing, cut or tampered object is refused and nothing
# of it stays (but a listing that hashed right), so that the controller can
# push the item instead.
cmd_pull() {
    [ $# -eq 4 ] || [ $# -eq 5 ] || die "usage: pull PID NAME URL tar|zstd|delta|delta.zstd [DSHA]"
    receiving "$1"
    name=$2 url=$3 form=$4 dsha=${5:-}
    case $name in ''|.*|*/*) die "bad item name '$name'" ;; esac
    cache_url "$url"
    line=$(item_line "$name")
    [ -n "$line" ] || die "item $name is not in the manifest being received"
    # shellcheck disable=SC2086 # the manifest's fields, checked when it was verified
    set -- $line
    delta=
    case $form in
        zstd) object=objects/$6.tar.zst ;;
        tar) object=objects/$2.tar form= ;;
        delta|delta.zstd)
            delta=1
            case $dsha in *[!0-9a-f]*|'') die "bad delta sha256 '$dsha'" ;; esac
            [ "${#dsha}" -eq 64 ] || die "bad delta sha256 '$dsha'"
            object=deltas/$dsha.tar
            [ "$form" = delta ] || object=$object.zst ;;
        *) die "unknown form '$form'" ;;
    esac
    if [ "$form" = zstd ] || [ "$form" = delta.zstd ]; then
        command -v zstd >/dev/null 2>&1 || die "this host has no zstd"
    fi
    # One pull of an item, and none of an item already taken: a second one
    # is refused before it touches anything (what it would clean up is not
    # its own).
    if [ -e "$T/unpack/$name" ] || [ -e "$T/got/$name.done" ] ||
            ! mkdir "$T/got/.$name.pulling" 2>/dev/null; then
        die "item $name was sent twice"
    fi
    pulling=$T/got/.$name.pulling
    lsha=$5 listed=
    mkdir -p "$T/listings"
    if [ -z "$delta" ] && [ "$3" -ge 1048576 ] && [ ! -f "$T/listings/$name.sums" ]; then
        # Only a listing that hashes to the signed one is kept.
        if [ -z "$(fetch_listing "$url" "$lsha" "$3" "$T/listings/.$name.$$")" ]; then
            mv -f "$T/listings/.$name.$$" "$T/listings/$name.sums"
            listed=" listing"
        fi
        rm -f "$T/listings/.$name.$$"
    fi
    why=$T/got/.$name.pull
    # No more bytes than the signed item can take: its archive's size, or
    # zstd's bound on that compressed (a cache that sends more, or for ever,
    # fills no disk; what it sent is refused by its hash).
    cap=$3
    if [ -n "$form" ]; then cap=$(($3 + $3 / 128 + 131072)); fi
    case $form in zstd) want=$6 ;; '') want=$2 ;; *) want=$dsha ;; esac
    # Nothing from the cache is read by zstd or tar before it hashes to what
    # the manifest signs (a delta: to the hash the controller named over
    # SSH). It is fetched into the receive's directory first, hashed on the
    # way in; the fetch's own failure (a 404, a cut connection) is kept
    # apart.
    { fetch_url "$url$object" 2>"$why.fetch" || echo "$?" >"$why.status"; } |
        head -c "$cap" | tee "$why.object" | openssl dgst -sha256 -r | cut -c1-64 >"$why.sha"
    # A fetch that failed writing (curl 23) or died of SIGPIPE was stopped
    # here, by the cap: the hash says why.
    status=$(cat "$why.status" 2>/dev/null) || status=
    case $status in 23|1[3-9][0-9]|2[0-9][0-9]) status= ;; esac
    if [ -n "$status" ]; then
        reason="cannot fetch $url$object: $(tr '\n' ' ' <"$why.fetch" | sed 's/ *$//' | cut -c1-200)"
    elif [ "$(cat "$why.sha")" != "$want" ]; then
        if store_full; then
            reason="disk full on $STORE: item $name does not fit"
        elif [ -n "$delta" ]; then
            reason="item $name: the delta's content hash is not $dsha"
        else
            reason="item $name: content hash does not match the manifest"
        fi
    else
        # take_item refuses by exiting: it runs in a subshell of its own,
        # with errexit on (set +e around it, so that the subshell is not a
        # condition, where errexit would be ignored).
        set +e
        (
            set -e
            trap - EXIT INT TERM HUP
            take_item "$name" "$form" <"$why.object"
        ) 2>"$why.take"
        took=$?
        set -e
        if [ "$took" = 0 ]; then
            rm -f "$why".*
            rmdir "$pulling"
            echo "pulled $name ${form:-tar}$listed"
            return 0
        fi
        reason=$(sed -n 's/^refused: //p' "$why.take" | tail -n 1)
        [ -n "$reason" ] || reason="refused (no reason given)"
    fi
    rm -f "$why".*
    forget_item "$name"
    rmdir "$pulling"
    die "from the cache: $reason"
}

# import FILE|-: a bundle (FILE, or stdin copied into the store's file
# system first): verify its manifest for this host exactly as a receive
# does (trusted key, host name, expiry, serial), take every item this host
# lacks from it, land them and make the new generation the loader's default.
cmd_import() {
    [ $# -eq 1 ] || die "usage: import FILE|-"
    receive_begin bundle
    file=$1
    if [ "$file" = - ]; then
        file=$TMP/bundle.tar
        cat >"$file" || die "cannot read the bundle from stdin"
    fi
    if [ ! -f "$file" ] || [ ! -r "$file" ]; then die "no bundle file '$file'"; fi
    # One read of the whole file first: a cut or damaged bundle is refused
    # before anything else.
    tar -tf "$file" >"$TMP/members" 2>"$TMP/members.err" ||
        die "not a whole bundle: $(tail -n 1 "$TMP/members.err")"
    grep -Fqx fruixops-bundle "$TMP/members" || die "not a fruixops bundle (no fruixops-bundle member)"
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    [ -n "$me" ] || die "this host has no recorded name (run inv bootstrap)"
    if ! grep -Fqx "hosts/$me/manifest" "$TMP/members"; then
        for_whom=$(sed -n 's|^hosts/\([^/]*\)/manifest$|\1|p' "$TMP/members" | head -n 5 | tr '\n' ' ')
        die "the bundle holds no manifest for '$me' (it is for: ${for_whom:-nobody})"
    fi
    (cd "$TMP/bundle" && tar -xOf "$file" "hosts/$me/manifest" >manifest &&
        tar -xOf "$file" "hosts/$me/manifest.sig" >manifest.sig) ||
        die "cannot read this host's manifest from the bundle"
    verify_manifest
    T=$TMP
    mkdir "$T/listings"
    zstd=
    if command -v zstd >/dev/null 2>&1; then zstd=1; fi
    while read -r p sha _ _ lsha zsha; do
        [ ! -d "$p" ] || continue
        name=$(basename "$p")
        if [ -n "$zstd" ] && grep -Fqx "objects/$zsha.tar.zst" "$TMP/members"; then
            object=objects/$zsha.tar.zst form=zstd
        elif grep -Fqx "objects/$sha.tar" "$TMP/members"; then
            object=objects/$sha.tar form=
        elif grep -Fqx "objects/$zsha.tar.zst" "$TMP/members"; then
            die "the bundle has item $name as .tar.zst only, and this host has no zstd (export it with --compress none)"
        else
            die "the bundle lacks item $name"
        fi
        if grep -Fqx "objects/$lsha.listing" "$TMP/members"; then
            tar -xOf "$file" "objects/$lsha.listing" >"$T/listings/$name.sums" ||
                die "cannot read item $name's listing from the bundle"
        fi
        # Out of the bundle into a file, and hashed, before zstd or tar read
        # it as an item.
        tar -xOf "$file" "$object" >"$TMP/object" 2>/dev/null ||
            die "cannot read item $name from the bundle"
        want=$sha
        [ "$form" != zstd ] || want=$zsha
        [ "$(openssl dgst -sha256 -r <"$TMP/object" | cut -c1-64)" = "$want" ] ||
            die "item $name: content hash does not match the manifest"
        # (take_item refuses by exiting: a subshell, with errexit on.)
        set +e
        (
            set -e
            trap - EXIT INT TERM HUP
            take_item "$name" "$form" <"$TMP/object"
        )
        took=$?
        set -e
        [ "$took" = 0 ] || exit 2
        rm -f "$TMP/object"
    done <"$TMP/items"
    receive_commit bundle ''
}

# fetch_listing URL LSHA SIZE FILE: listing object LSHA from the cache at
# URL into FILE, no bigger than an item of SIZE bytes can have. Prints why it
# is not the signed listing, if it is not.
fetch_listing() {
    rm -f "$4.failed"
    { fetch_url "${1}objects/$2.listing" 2>"$4.err" || : >"$4.failed"; } |
        head -c $(($3 + 1048576)) >"$4"
    if [ -f "$4.failed" ]; then
        echo "cannot fetch ${1}objects/$2.listing: $(head -n 1 "$4.err")"
    elif [ "$(openssl dgst -sha256 -r <"$4" | cut -c1-64)" != "$2" ]; then
        echo "its file listing does not match the manifest"
    fi
    rm -f "$4.failed" "$4.err"
}

# listings PID pull URL NAME...: as `listings`, but this host fetches the
# listings of items NAME from the cache at URL (objects/LSHA.listing); each
# must hash to the manifest's listing sha256. If one cannot be had, nothing
# is kept and the command is refused: the controller then sends them.
pull_listings() {
    url=$1
    shift
    cache_url "$url"
    mkdir "$T/listings.part" || die "listings sent twice"
    for name in "$@"; do
        case $name in ''|.*|*/*) listings_refused "bad item name '$name'" ;; esac
        line=$(item_line "$name")
        [ -n "$line" ] || listings_refused "item $name is not in the manifest being received"
        part=$T/listings.part/$name.sums
        [ ! -f "$part" ] || listings_refused "listing of $name asked twice"
        why=$(fetch_listing "$url" "$(echo "$line" | cut -d' ' -f5)" \
            "$(echo "$line" | cut -d' ' -f3)" "$part")
        [ -z "$why" ] || listings_refused "item $name: $why"
    done
    mv "$T/listings.part" "$T/listings"
    need_answer "$T/listings" "$T/have"
}

# listings_refused WHY: none of the pulled listings is kept.
listings_refused() {
    remove_tree "$T/listings.part"
    die "from the cache: $1"
}
