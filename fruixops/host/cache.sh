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

# fetch_url URL PIDFILE: the body of URL on stdout; fails on any HTTP
# error. The tool's pid goes in PIDFILE, so that a pull that takes too long
# can end it (fetch_within). FreeBSD base has fetch(1); curl or wget where
# that is what the host has.
fetch_url() {
    if command -v fetch >/dev/null 2>&1; then
        set -- "$1" "$2" fetch -q -T 30 -o -
    elif command -v curl >/dev/null 2>&1; then
        # (A cache behind a CDN or a bucket may redirect, as fetch and wget
        # follow.)
        set -- "$1" "$2" curl -fsSL --max-redirs 5 --connect-timeout 30
    elif command -v wget >/dev/null 2>&1; then
        set -- "$1" "$2" wget -q --tries=1 -T 30 -O -
    else
        echo "no fetch(1), curl or wget on this host" >&2
        return 127
    fi
    url=$1 pidfile=$2
    shift 2
    # shellcheck disable=SC2016 # $$ and $1 are the inner sh's
    sh -c 'echo "$$" >"$1"; shift; exec "$@"' sh "$pidfile" "$@" "$url"
}

# fetch_within SECONDS URL FILE: fetch_url URL into FILE (at most CAP bytes,
# a global), its tool ended once SECONDS have passed or the receive in $T
# (RECEIVE_PID) is gone: a cache that stalls, or trickles a byte now and
# then, holds nothing for longer than the controller allows, whatever the
# tool (fetch's -T bounds one read, not the whole). Fails with the tool's
# status, or 124 when it was ended; FILE.err holds what the tool said.
fetch_within() {
    rm -f "$3.pid" "$3.late" "$3.status"
    watchdog "$1" "$3.pid" "$3.late" </dev/null >/dev/null 2>&1 &
    dog=$!
    { fetch_url "$2" "$3.pid" 2>"$3.err" || echo "$?" >"$3.status"; } | head -c "$CAP" >"$3"
    kill "$dog" 2>/dev/null || :
    wait "$dog" || :
    if [ -f "$3.late" ]; then rm -f "$3.pid" "$3.late" "$3.status"; return 124; fi
    status=$(cat "$3.status" 2>/dev/null) || status=0
    rm -f "$3.pid" "$3.status"
    # A tool that failed writing (curl 23) or died of SIGPIPE was stopped by
    # the cap (head): what it sent is judged by its hash.
    case $status in 23|1[3-9][0-9]|2[0-9][0-9]) status=0 ;; esac
    return "$status"
}

# watchdog SECONDS PIDFILE LATE: once SECONDS have passed, or the receive
# RECEIVE_PID has ended, kill the process PIDFILE names and leave LATE.
watchdog() {
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    end=$(($(date +%s) + $1)) victim=
    while [ "$(date +%s)" -lt "$end" ] && kill -0 "$RECEIVE_PID" 2>/dev/null; do
        sleep 1 & nap=$!
        wait "$nap" || :
        [ -n "$victim" ] || victim=$(cat "$2" 2>/dev/null) || :
    done
    [ -n "$victim" ] || victim=$(cat "$2" 2>/dev/null) || :
    : >"$3"
    if [ -n "$victim" ]; then kill "$victim" 2>/dev/null || :; fi
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

# pull [--within SECONDS] PID NAME URL FORM [DSHA]: item NAME of receive
# PID, from the cache at URL (which ends in /), in FORM: "zstd"
# (objects/ZSHA.tar.zst), "tar" (objects/SHA.tar), or a delta DSHA
# ("delta", "delta.zstd": deltas/DSHA.tar[.zst], the contents this host said
# it lacks, whose sha256 the controller names; its files are then held to
# the signed listing, as a sent delta's). A big whole item's listing comes
# first, when the cache has it, so that its tree is held to the listing's
# shape instead of hashed again. Each fetch ends after SECONDS (default:
# PULL_GRACE plus the bytes it may bring at PULL_RATE). Prints "pulled NAME
# FORM", and "listing" after it when the listing came too. A missing, cut,
# tampered or too slow object is refused and nothing of it stays (but a
# listing that hashed right), so that the controller can push the item
# instead.
cmd_pull() {
    within=
    if [ "${1:-}" = --within ]; then
        case ${2:-} in ''|*[!0-9]*) die "--within needs a number of seconds" ;; esac
        [ "${#2}" -le 6 ] || die "--within: too many seconds"
        within=$2
        shift 2
    fi
    [ $# -eq 4 ] || [ $# -eq 5 ] ||
        die "usage: pull [--within SECONDS] PID NAME URL tar|zstd|delta|delta.zstd [DSHA]"
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
    # No more bytes than the signed item can take: its archive's size, or
    # zstd's bound on that compressed (a cache that sends more, or for ever,
    # fills no disk; what it sent is refused by its hash).
    CAP=$3
    if [ -n "$form" ]; then CAP=$(($3 + $3 / 128 + 131072)); fi
    # The whole pull (listing and object) ends within this many seconds.
    limit=${within:-$((PULL_GRACE + (CAP + $3 + 1048576) / PULL_RATE))}
    deadline=$(($(date +%s) + limit))
    lsha=$5 listed=
    mkdir -p "$T/listings"
    why=$T/got/.$name.pull
    if [ -z "$delta" ] && [ "$3" -ge 1048576 ] && [ ! -f "$T/listings/$name.sums" ]; then
        # Only a listing that hashes to the signed one is kept.
        if [ -z "$(fetch_listing "$url" "$lsha" "$3" "$T/listings/.$name.$$" "$limit")" ]; then
            mv -f "$T/listings/.$name.$$" "$T/listings/$name.sums"
            listed=" listing"
        fi
        rm -f "$T/listings/.$name.$$"
    fi
    case $form in zstd) want=$6 ;; '') want=$2 ;; *) want=$dsha ;; esac
    # Nothing from the cache is read by zstd or tar before it hashes to what
    # the manifest signs (a delta: to the hash the controller named over
    # SSH). It is fetched into the receive's directory first; the fetch's
    # own failure (a 404, a cut connection, too slow) is kept apart.
    status=0 left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] || left=1
    fetch_within "$left" "$url$object" "$why.object" || status=$?
    if [ "$status" = 124 ]; then
        reason="the cache was too slow: $url$object not fetched within ${limit}s"
    elif [ "$status" != 0 ]; then
        reason="cannot fetch $url$object: $(tr '\n' ' ' <"$why.object.err" | sed 's/ *$//' | cut -c1-200)"
    elif [ "$(openssl dgst -sha256 -r <"$why.object" | cut -c1-64)" != "$want" ]; then
        if store_full; then
            reason="disk full on $STORE: item $name does not fit"
        elif [ -n "$delta" ]; then
            reason="item $name: the delta's content hash is not $dsha"
        else
            reason="item $name: content hash does not match the manifest"
        fi
    elif take "$name" "$form" "$why.take" <"$why.object"; then
        rm -f "$why".*
        rmdir "$pulling"
        echo "pulled $name ${form:-tar}$listed"
        return 0
    else
        reason=$(why_refused "$why.take")
    fi
    rm -f "$why".*
    forget_item "$name"
    rmdir "$pulling"
    die "from the cache: $reason"
}

# The slowest a pull may be: PULL_GRACE seconds, and as long again as its
# bytes take at PULL_RATE bytes/s (the controller names its own limit with
# --within, from the inventory's cache settings, and waits longer than that).
PULL_GRACE=30
PULL_RATE=65536

# import FILE|-: a bundle (FILE, or stdin copied into the store's file
# system first): verify its manifest for this host exactly as a receive
# does (trusted key, host name, expiry, serial), take every item this host
# lacks from it, land them and make the new generation the loader's default.
cmd_import() {
    [ $# -eq 1 ] || die "usage: import FILE|-"
    # A file on this host is read as root: only root's own login may name
    # one. A restricted key or a doas/sudo account sends the bundle on
    # stdin (else it could learn which root-only files exist, and what they
    # hold).
    if [ "$1" != - ] && { [ -n "$RESTRICTED" ] || [ -n "${DOAS_USER:-}${SUDO_USER:-}" ]; }; then
        refuse_access "import: through a restricted key, doas or sudo, the bundle comes on stdin (import -)"
    fi
    receive_begin bundle
    file=$1
    if [ "$file" = - ]; then
        file=$TMP/bundle.tar
        cat >"$file" || die "cannot read the bundle from stdin"
    fi
    if [ ! -f "$file" ] || [ ! -r "$file" ]; then die "no bundle file '$file'"; fi
    # Read on stdin, never named to tar (GNU tar takes HOST:FILE for a
    # remote archive). One read of the whole file first: a cut or damaged
    # bundle is refused before anything else.
    tar -tf - <"$file" >"$TMP/members" 2>"$TMP/members.err" ||
        die "not a whole bundle: $(tail -n 1 "$TMP/members.err")"
    grep -Fqx fruixops-bundle "$TMP/members" || die "not a fruixops bundle (no fruixops-bundle member)"
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    [ -n "$me" ] || die "this host has no recorded name (run inv bootstrap)"
    if ! grep -Fqx "hosts/$me/manifest" "$TMP/members"; then
        for_whom=$(sed -n 's|^hosts/\([^/]*\)/manifest$|\1|p' "$TMP/members" | head -n 5 | tr '\n' ' ')
        die "the bundle holds no manifest for '$me' (it is for: ${for_whom:-nobody})"
    fi
    { tar -xOf - "hosts/$me/manifest" <"$file" | head -c "$BUNDLE_MAX" >"$TMP/bundle/manifest" &&
        tar -xOf - "hosts/$me/manifest.sig" <"$file" | head -c 4096 >"$TMP/bundle/manifest.sig"; } ||
        die "cannot read this host's manifest from the bundle"
    verify_manifest
    T=$TMP
    mkdir "$T/listings"
    zstd=
    if command -v zstd >/dev/null 2>&1; then zstd=1; fi
    while read -r p sha size _ lsha zsha; do
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
        # No member is read past what the signed item can take (as a pull).
        if grep -Fqx "objects/$lsha.listing" "$TMP/members"; then
            tar -xOf - "objects/$lsha.listing" <"$file" | head -c $((size + 1048576)) \
                >"$T/listings/$name.sums" || die "cannot read item $name's listing from the bundle"
        fi
        cap=$size
        [ "$form" != zstd ] || cap=$((size + size / 128 + 131072))
        # Out of the bundle into a file, and hashed, before zstd or tar read
        # it as an item.
        tar -xOf - "$object" <"$file" 2>/dev/null | head -c "$cap" >"$TMP/object" ||
            die "cannot read item $name from the bundle"
        want=$sha
        [ "$form" != zstd ] || want=$zsha
        [ "$(openssl dgst -sha256 -r <"$TMP/object" | cut -c1-64)" = "$want" ] ||
            die "item $name: content hash does not match the manifest"
        take "$name" "$form" "$TMP/take" <"$TMP/object" || die "$(why_refused "$TMP/take")"
        rm -f "$TMP/object"
    done <"$TMP/items"
    # The bundle's sealed secrets for this host (if any) are kept before the
    # generation that names them lands; refused, nothing lands.
    secrets_import "$file" "$me"
    receive_commit bundle ''
}

# fetch_listing URL LSHA SIZE FILE SECONDS: listing object LSHA from the
# cache at URL into FILE, no bigger than an item of SIZE bytes can have,
# within SECONDS. Prints why it is not the signed listing, if it is not.
fetch_listing() {
    status=0 CAP=$(($3 + 1048576))
    fetch_within "$5" "${1}objects/$2.listing" "$4" || status=$?
    if [ "$status" = 124 ]; then
        echo "the cache was too slow: ${1}objects/$2.listing not fetched within ${5}s"
    elif [ "$status" != 0 ]; then
        echo "cannot fetch ${1}objects/$2.listing: $(head -n 1 "$4.err")"
    elif [ "$(openssl dgst -sha256 -r <"$4" | cut -c1-64)" != "$2" ]; then
        echo "its file listing does not match the manifest"
    fi
    rm -f "$4.err"
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
        size=$(echo "$line" | cut -d' ' -f3)
        why=$(fetch_listing "$url" "$(echo "$line" | cut -d' ' -f5)" "$size" "$part" \
            "$((PULL_GRACE + (size + 1048576) / PULL_RATE))")
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
