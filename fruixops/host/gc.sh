# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): garbage collection of
# generations and store items.

# freed_by ITEMS SIZES: for each item (one store path per line of ITEMS) the
# bytes deleting them all frees, as "PATH BYTES" lines in SIZES: each file
# counted once, with the first item that holds it, and only when every name
# it has is in these items (a file shared by a hard link with an item that
# stays frees nothing).
freed_by() {
    while read -r p; do
        find "$p" -type f -exec ls -iln {} + | sed "s|^ *|$p |"
    done <"$1" | awk '
        { item = $1; ino = $2; seen[ino]++; links[ino] = $4; size[ino] = $7
          if (!(ino in owner)) owner[ino] = item; items[item] = 1 }
        END {
            for (i in seen) if (seen[i] >= links[i]) freed[owner[i]] += size[i]
            for (it in items) print it, freed[it] + 0
        }' >"$2"
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
    reconcile
    new_tmp
    booted=$(kenv -q fruix.generation 2>/dev/null) || booted=
    default=$(loader_default)
    pending=$(pending_generation)
    trial=$(cat "$TRIAL" 2>/dev/null) || trial=
    # Newest first; the first KEEP stay, as do the protected ones.
    for g in "$GENS"/*; do
        n=$(basename "$g"); case $n in ''|*[!0-9]*) continue ;; esac; echo "$n"
    done | sort -rn >"$TMP/gens"
    # Whatever the links say, the newest complete generation other than the
    # default stays: there is always one to go back to.
    previous=
    while read -r n; do
        if [ "$n" != "${default:-$(gen_of "$SYSTEM/current")}" ] && generation_complete "$n"; then
            previous=$n
            break
        fi
    done <"$TMP/gens"
    i=0
    : >"$TMP/doomed"
    while read -r n; do
        i=$((i + 1))
        [ "$i" -le "$keep" ] && continue
        # Exactly these generations, each named once by what keeps it.
        why=
        if [ "$n" = "$booted" ]; then why=booted
        elif [ "$n" = "$default" ]; then why=default
        elif [ "$n" = "$pending" ]; then why=next-boot
        elif [ "$n" = "$trial" ]; then why=trial
        elif [ "$n" = "$(gen_of "$SYSTEM/current")" ]; then why=current
        elif [ "$n" = "$(gen_of "$SYSTEM/rollback")" ]; then why=rollback
        elif [ "$n" = "$previous" ]; then why=previous
        else case $pins in *" $n "*) why=pinned ;; esac
        fi
        if [ -n "$why" ]; then echo "keep-generation $n $why"; continue; fi
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
    for p in "$STORE"/*; do
        [ -d "$p" ] || continue
        grep -qx "$p" "$TMP/live" || printf '%s\n' "$p"
    done >"$TMP/dead"
    freed_by "$TMP/dead" "$TMP/sizes"
    freed=0
    while read -r p; do
        size=$(awk -v p="$p" '$1 == p { print $2; exit }' "$TMP/sizes")
        size=${size:-0}
        echo "delete-item $p $size"
        freed=$((freed + size))
        [ -n "$dry" ] && continue
        name=$(basename "$p")
        chmod u+w "$p"
        mv "$p" "$STORE/.gc-$name"
        rm -f "$SUMS/$name.sums"
        remove_tree "$STORE/.gc-$name"
    done <"$TMP/dead"
    echo "freed $freed${dry:+ (dry run)}"
}

