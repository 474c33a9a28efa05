# shellcheck shell=sh disable=SC2034,SC2153,SC2154
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): files this host already
# holds. A new item is received as a "delta" when the store already has some
# of its files (same content, same mode): the controller sends the rest, and
# the host links the files it has into the new item (hard links inside
# /frx/store, as Nix's store optimisation does). What lands is still checked
# file by file against the item's signed listing before it becomes visible.

# The sha256 of an empty file: never linked (every empty file in every item
# would otherwise be one inode, past the file system's link limit), and it
# costs nothing to send.
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# reusable: the listings of items in the store whose files may be linked:
# items of generations recorded with listings that carry modes (manifest
# format 3), present, with their recorded listing. One path per line.
reusable() {
    for g in "$GENS"/*/manifest; do
        [ -f "$g" ] || continue
        [ "$(head -n 1 "$g")" = "fruixops-manifest 3" ] || continue
        awk '$1 == "item" { print $2 }' "$g"
    done | sort -u | while read -r p; do
        s=$SUMS/$(basename "$p").sums
        if [ -d "$p" ] && [ -f "$s" ]; then printf '%s\n' "$s"; fi
    done
}

# have_index FILE: "KIND SHA PATH" for one file per (KIND, SHA) in the
# reusable items, KIND f (0444) or x (0555), PATH absolute.
have_index() {
    reusable >"$1.list"
    if [ ! -s "$1.list" ]; then : >"$1"; return 0; fi
    # shellcheck disable=SC2046 # one listing file per line, no spaces
    LC_ALL=C awk -v store="$STORE" -v empty="$EMPTY_SHA" '
        FNR == 1 { n = FILENAME; sub(/.*\//, "", n); sub(/\.sums$/, "", n) }
        ($1 == "f" || $1 == "x") && $2 != empty && !(($1 " " $2) in seen) {
            seen[$1 " " $2] = 1
            p = $0; sub(/^[fx] [0-9a-f]+ \.\//, "", p)
            print $1, $2, store "/" n "/" p
        }' $(cat "$1.list") >"$1"
}

# need_answer DIR HAVE: for each item whose listing is DIR/NAME.sums, what to
# send: "whole NAME" when this host has none of its files, else "delta NAME"
# followed by one "need KIND SHA" per file content it lacks. HAVE: where the
# have index is written (assemble reads it again).
need_answer() {
    have_index "$2.part"
    mv "$2.part" "$2"
    for s in "$1"/*.sums; do
        [ -f "$s" ] || continue
        name=$(basename "$s" .sums)
        LC_ALL=C awk -v name="$name" -v empty="$EMPTY_SHA" '
            NR == FNR { have[$1 " " $2] = 1; next }
            ($1 == "f" || $1 == "x") && $2 != empty {
                k = $1 " " $2
                if (k in have) { reuse++; next }
                if (!(k in asked)) { asked[k] = 1; need[++n] = k }
            }
            END {
                if (!reuse) { print "whole " name; exit }
                print "delta " name
                for (i = 1; i <= n; i++) print "need " need[i]
            }' "$2" "$s"
    done
}

# assemble DIR LISTING: link into DIR (a delta as unpacked) every file of
# LISTING it lacks: from the store's items (the have index) or from a file
# with the same content and mode that came in DIR itself. Empty files always
# come in the delta. Every entry DIR holds is one LISTING names, of its kind
# (take_item checked the delta's shape first): no name linked or copied here
# can pass through a symlink or already exist. Nothing here is trusted: the
# item is listed afterwards and must match its signed listing.
assemble() {
    dir=$1
    [ -f "$T/have" ] || die "item $(basename "$dir"): a delta before the listings' answer"
    ( cd "$dir" && find . -type f ) >"$got.came"
    # One ln per directory (files linked under their own name), one per file
    # otherwise; quoted for sh. Names come from the store's own listings and
    # the signed listing, and never hold a newline.
    LC_ALL=C awk -v dir="$dir" -v sq="'" '
        function q(s) { gsub(sq, sq "\"" sq "\"" sq, s); return sq s sq }
        function base(s) { sub(/.*\//, "", s); return s }
        function parent(s) { sub(/\/[^\/]*$/, "", s); return s }
        FILENAME == ARGV[1] { p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); have[$1 " " $2] = p; next }
        FILENAME == ARGV[2] { came[$0] = 1; next }
        $1 == "f" || $1 == "x" {
            p = $0; sub(/^[fx] [0-9a-f]+ /, "", p)
            k = $1 " " $2
            if (p in came) { if (!(k in own)) own[k] = dir "/" substr(p, 3); next }
            src = (k in have) ? have[k] : ((k in own) ? own[k] : "")
            if (src == "") next
            dst = dir "/" substr(p, 3)
            if (base(src) == base(dst)) {
                d = parent(dst)
                if (!(d in len)) { dirs[++nd] = d; len[d] = 0 }
                if (len[d] > 65536) { print "ln --" group[d] " " q(d "/") " || :"; group[d] = ""; len[d] = 0 }
                group[d] = group[d] " " q(src); len[d] += length(src) + 3
            } else {
                print "ln -- " q(src) " " q(dst) " || :"
            }
        }
        END {
            for (i = 1; i <= nd; i++) if (group[dirs[i]] != "")
                print "ln --" group[dirs[i]] " " q(dirs[i] "/") " || :"
        }' "$T/have" "$got.came" "$2" >"$got.links"
    sh "$got.links" 2>/dev/null || :
    # Whatever could not be linked (another file system, the link limit) is
    # copied: cp keeps the source's mode, which is the one asked for.
    awk '$1 == "f" || $1 == "x" { p = $0; sub(/^[fx] [0-9a-f]+ \.\//, "", p); print $1, $2, p }' \
            "$2" | while read -r kind sha p; do
        if [ -e "$dir/$p" ] || [ -L "$dir/$p" ]; then continue; fi
        src=$(awk -v k="$kind $sha" '($1 " " $2) == k { sub(/^[^ ]+ [^ ]+ /, ""); print; exit }' \
            "$T/have")
        if [ -n "$src" ]; then cp -- "$src" "$dir/$p" 2>/dev/null || :; fi
    done
}
