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
    # Two shells, one per core: a base has thousands of directories, an ln
    # process each, and every command links names of its own.
    awk 'NR % 2' "$got.links" >"$got.links.1"
    awk '!(NR % 2)' "$got.links" >"$got.links.2"
    sh "$got.links.1" 2>/dev/null & linking=$!
    sh "$got.links.2" 2>/dev/null || :
    wait "$linking" || :
    # Whatever could not be linked (another file system, the link limit) is
    # copied: cp keeps the source's mode, which is the one asked for. The
    # files still missing are found in one walk (a shell loop over every
    # listed file reads its input a byte at a time: seconds on a base).
    ( cd "$dir" && find . -type f ) >"$got.made"
    LC_ALL=C awk 'FILENAME == ARGV[1] { made[$0] = 1; next }
        ($1 == "f" || $1 == "x") {
            p = $0; sub(/^[fx] [0-9a-f]+ /, "", p)
            if (!(p in made)) { sub(/^\.\//, "", p); print $1, $2, p }
        }' "$got.made" "$2" | while read -r kind sha p; do
        if [ -e "$dir/$p" ] || [ -L "$dir/$p" ]; then continue; fi
        src=$(awk -v k="$kind $sha" '($1 " " $2) == k { sub(/^[^ ]+ [^ ]+ /, ""); print; exit }' \
            "$T/have")
        if [ -n "$src" ]; then cp -- "$src" "$dir/$p" 2>/dev/null || :; fi
    done
}

# hold_assembled DIR LISTING: why an assembled delta (DIR) must be refused,
# if it must: its tree is not LISTING's (names, kinds, modes, link targets),
# holds a writable or set-id entry, or a file lacks its listed content.
# A file is taken to have its content without being read again only when
# it is the same inode as the store file assemble linked it from (a file of
# an item that landed verified, whose recorded listing gives that content),
# and still has the store's mtime: one second past the epoch, as every
# unpacked store file has, which any write through the file system changes.
# Every other file (what the delta brought, a copy, a store file written
# since it landed) is hashed here. What this trusts is in docs/security.md;
# `verify` re-hashes every file.
hold_assembled() {
    dir=$1
    # The shape on one core while the rest is walked on the other.
    shape "$dir" >"$got.shape" & shaping=$!
    why=$(audit_modes "$dir")
    TZ=UTC0 touch -t 197001010000.01 "$got.epoch"
    ( cd "$dir" && find . -type f -newer "$got.epoch" ) >"$got.written"
    ( cd "$dir" && find . -type f -exec ls -di {} + ) >"$got.inodes"
    wait "$shaping" || :
    if [ -n "$why" ]; then echo "$why"; return 0; fi
    if ! sed 's/^\([fx]\) [0-9a-f]* /\1 - /' "$2" | LC_ALL=C sort | cmp -s - "$got.shape"; then
        echo "its tree once assembled is not what its signed listing says"
        return 0
    fi
    # The inodes of the store files assemble linked from (one ls per batch).
    LC_ALL=C awk -v sq="'" '
        function q(s) { gsub(sq, sq "\"" sq "\"" sq, s); return sq s sq }
        FILENAME == ARGV[1] { p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); have[$1 " " $2] = p; next }
        FILENAME == ARGV[2] { came[$0] = 1; next }
        ($1 == "f" || $1 == "x") && (($1 " " $2) in have) {
            p = $0; sub(/^[fx] [0-9a-f]+ /, "", p)
            src = have[$1 " " $2]
            if ((p in came) || (src in asked)) next
            asked[src] = 1
            if (len > 65536) { print "ls -di" group; group = ""; len = 0 }
            group = group " " q(src); len += length(src) + 3
        }
        END { if (group != "") print "ls -di" group }' "$T/have" "$got.came" "$2" >"$got.ls"
    sh "$got.ls" >"$got.sources" 2>/dev/null || :
    # Linked and unwritten: its recorded content; else hashed (one openssl
    # per batch, in DIR).
    : >"$got.contents"
    LC_ALL=C awk -v sq="'" -v trusted="$got.contents" '
        function q(s) { gsub(sq, sq "\"" sq "\"" sq, s); return sq s sq }
        # "INODE PATH" (ls -di): PATH into name, INODE returned.
        function ino(s,    i) { i = s; sub(/^ */, "", i); sub(/ .*/, "", i)
                                name = s; sub(/^ *[0-9]+ /, "", name); return i }
        FILENAME == ARGV[1] { p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); have[$1 " " $2] = p; next }
        FILENAME == ARGV[2] { came[$0] = 1; next }
        FILENAME == ARGV[3] { written[$0] = 1; next }
        FILENAME == ARGV[4] { i = ino($0); at[name] = i; next }
        FILENAME == ARGV[5] { i = ino($0); src[name] = i; next }
        $1 == "f" || $1 == "x" {
            p = $0; sub(/^[fx] [0-9a-f]+ /, "", p)
            k = $1 " " $2
            if (!(p in came) && !(p in written) && (k in have) && (p in at) &&
                    (have[k] in src) && at[p] == src[have[k]]) {
                print $2 " " p > trusted
                next
            }
            if (len > 65536) { print "openssl dgst -sha256 -r" group; group = ""; len = 0 }
            group = group " " q(p); len += length(p) + 3
        }
        END { if (group != "") print "openssl dgst -sha256 -r" group }
    ' "$T/have" "$got.came" "$got.written" "$got.inodes" \
        "$got.sources" "$2" >"$got.hash"
    ( cd "$dir" && sh "$got.hash" ) 2>/dev/null |
        sed 's/^\([0-9a-f]*\) \*\{0,1\}/\1 /' >>"$got.contents" || :
    LC_ALL=C awk '
        FILENAME == ARGV[1] { p = $0; sub(/^[0-9a-f]+ /, "", p); has[p] = $1; next }
        $1 == "f" || $1 == "x" {
            p = $0; sub(/^[fx] [0-9a-f]+ /, "", p)
            if (has[p] != $2) { print "its file " p " does not have its listed content"; exit }
        }' "$got.contents" "$2"
}
