# shellcheck shell=sh disable=SC2034,SC2153,SC2154
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): an item's tree as this
# host sees it -- what refuses it (audit), its shape, its listing (what
# verify compares, and what an item is held to).

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
    bad=$(audit_modes "$2")
    if [ -n "$bad" ]; then echo "$bad"; return; fi
    # A hard link must have all its names inside the item: a link to a file
    # elsewhere on this file system shows as more links than names here.
    if find "$2" -type f -links +1 -exec ls -il {} + |
            awk '{ n[$1] = $3; c[$1]++ } END { for (i in n) if (c[i] != n[i]) bad = 1; exit !bad }'
    then
        echo "hard link to a file outside the item"
    fi
}

# audit_modes DIR: why a tree must not be a store item, if it must not. One
# walk: store items are read-only as they come (canonical archives carry no
# write bit), so a writable entry is refused rather than fixed up, as is
# anything but a file, directory or symlink, and set-id bits.
audit_modes() {
    bad=$(find "$1" -mindepth 1 \( -type b -o -type c -o -type p -o -type s \
            -o -perm -4000 -o -perm -2000 \
            -o \( ! -type l \( -perm -200 -o -perm -020 -o -perm -002 \) \) \) -print |
        head -n 1)
    [ -n "$bad" ] || return 0
    if [ -d "$bad" ] || [ -f "$bad" ] && [ ! -u "$bad" ] && [ ! -g "$bad" ]; then
        echo "writable entry in a store item"
    else
        echo "device node, fifo, socket or setuid/setgid file"
    fi
}

# shape DIR: the listing of DIR without file contents ("f - path",
# "x - path"), sorted.
shape() {
    (
        cd "$1" || exit 2
        find . \( -type d -exec printf 'd - %s\n' {} + \) -o \
            \( -type f -perm -100 -exec printf 'x - %s\n' {} + \) -o \
            \( -type f -exec printf 'f - %s\n' {} + \)
        link_lines
    ) | LC_ALL=C sort
}

# link_lines: "l TARGET path" for every symlink below the current directory.
link_lines() {
    # Link targets in batches, not a readlink per link (thousands in a base):
    # two walks in the same order, paired line by line (names and targets
    # with a newline never reach a store item).
    links=$(mktemp) targets=$(mktemp)
    find . -type l >"$links"
    find . -type l -exec readlink {} + >"$targets"
    awk 'NR == FNR { t[FNR] = $0; next } { print "l " t[FNR] " " $0 }' "$targets" "$links"
    rm -f "$links" "$targets"
}

# listing DIR: every entry of an item tree, sorted: "f SHA256 path",
# "l TARGET path", "d - path". What verify compares against.
listing() {
    (
        cd "$1" || exit 2
        # Mode too: "f" a 0444 file, "x" a 0555 one (store items hold no other).
        find . -type f ! -perm -100 -exec openssl dgst -sha256 -r {} + |
            awk '{ h = $1; sub(/^[0-9a-f]+ \*?/, ""); print "f " h " " $0 }'
        find . -type f -perm -100 -exec openssl dgst -sha256 -r {} + |
            awk '{ h = $1; sub(/^[0-9a-f]+ \*?/, ""); print "x " h " " $0 }'
        link_lines
        find . -type d | sed 's/^/d - /'
    ) | LC_ALL=C sort
}

# listing_as FORMAT DIR: the listing of DIR as a manifest of FORMAT recorded
# it (before format 3, every file was "f" whatever its mode).
listing_as() {
    if [ "$1" = 3 ]; then listing "$2"; else listing "$2" | sed 's/^x /f /'; fi
}
