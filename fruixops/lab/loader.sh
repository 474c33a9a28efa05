#!/bin/sh
# The lab's model of FreeBSD's boot loader (stand/lua/config.lua), run by the
# lab's boot.sh against the host's own /boot. It does what the loader does
# with the files fruixops writes, in the loader's order:
#
#   1. /boot/defaults/loader.conf, then every file its loader_conf_files
#      names (each may name more; each file is read once), then every *.conf
#      file in each directory of loader_conf_dirs, then the files of
#      local_loader_conf_files. A later assignment wins.
#   2. nextboot_conf (default /boot/nextboot.conf): when its first line is
#      nextboot_enable="YES", its variables are applied and that first line is
#      rewritten in place to nextboot_enable="NO" -- before the kernel loads,
#      so a kernel that never comes up is not tried twice.
#   3. The kernel: with kernel=K and bootfile=B, the loader tries the
#      directory /boot/K, then K itself, for the file B, then K as a file. It
#      loads only an ELF image; anything else fails and the machine stops at
#      the loader prompt (here: exit 3, the host halts until power-cycled).
#
# What the loader does not do here: module loading, exec="..." lines, $var
# expansion in values, menus, ZFS boot environments and nvstore. Those are
# reported and skipped.
#
# Usage: loader.sh ENVFILE
#   ENVFILE receives the resulting kernel environment, one name="value" per
#   line (what `kenv` shows on the booted system).
set -eu
ENV=$1
LOADED=$ENV.loaded
: >"$ENV"
: >"$LOADED"

say() { echo "loader: $*" >&2; }

setenv() { # NAME VALUE: later assignments win
    awk -v k="$1" -F= '$1 != k' "$ENV" >"$ENV.new"
    printf '%s="%s"\n' "$1" "$2" >>"$ENV.new"
    mv "$ENV.new" "$ENV"
}

unsetenv() { awk -v k="$1" -F= '$1 != k' "$ENV" >"$ENV.new"; mv "$ENV.new" "$ENV"; }

getenv() { # NAME: its value; status 1 when unset
    awk -v k="$1" '
        { n = index($0, "="); if (substr($0, 1, n - 1) == k) { v = substr($0, n + 2); found = 1 } }
        END { if (!found) exit 1; sub(/"$/, "", v); print v }' "$ENV"
}

# parse FILE: apply its assignments, as config.parse does: blank lines and
# comments skipped; NAME="value" or NAME=word, optionally followed by a
# comment; a malformed line is reported and skipped.
parse() {
    awk '
        /^[ \t]*$/ || /^[ \t]*#/ { next }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            if (!match(line, /^[A-Za-z0-9][-A-Za-z0-9_.]*[ \t]*=[ \t]*/)) { bad(); next }
            head = substr(line, 1, RLENGTH); rest = substr(line, RLENGTH + 1)
            name = head; sub(/[ \t]*=.*/, "", name)
            if (substr(rest, 1, 1) == "\"") {
                v = substr(rest, 2); q = index(v, "\"")
                if (q == 0) { bad(); next }
                tail = substr(v, q + 1); v = substr(v, 1, q - 1)
            } else if (match(rest, /^[-A-Za-z0-9][-A-Za-z0-9_.]*/)) {
                v = substr(rest, 1, RLENGTH); tail = substr(rest, RLENGTH + 1)
            } else { bad(); next }
            if (tail !~ /^[ \t]*(#.*)?$/) { bad(); next }
            if (name == "exec") { print "skip exec " v; next }
            if (name ~ /_(load|name|type|flags|before|after|error)$/) { print "skip module " name; next }
            print "set " name " " v
        }
        function bad() { print "malformed " NR " " $0 }
    ' "$1" | while IFS=' ' read -r what name value; do
        case $what in
            set) setenv "$name" "$value" ;;
            malformed) say "$1: malformed line $name: $value" ;;
            skip) ;;
        esac
    done
}

# read_conf FILE [TOP]: read FILE once, then the files its loader_conf_files
# names; at the top level also the conf dirs and the local files. A subshell,
# so that it can recurse: all state is in $ENV and $LOADED.
read_conf() (
    f=$1
    grep -qxF "$f" "$LOADED" && exit 0
    echo "$f" >>"$LOADED"
    unsetenv loader_conf_files
    if [ -f "$f" ]; then say "loading $f"; parse "$f"; fi
    files=$(getenv loader_conf_files) || files=
    for name in $files; do read_conf "$name"; done
    if [ "${2:-}" = top ]; then
        dirs=$(getenv loader_conf_dirs) || dirs=
        for d in $dirs; do
            if [ ! -d "$d" ]; then say "failed to load conf dir '$d': not a directory"; continue; fi
            for c in "$d"/*.conf; do
                [ -f "$c" ] && read_conf "$c"
            done
        done
        locals=$(getenv local_loader_conf_files) || locals=
        for name in $locals; do read_conf "$name"; done
    fi
)

check_nextboot() {
    nb=$(getenv nextboot_conf) || return 0
    [ -f "$nb" ] || return 0
    if [ "$(getenv nextboot_enable || :)" = NO ]; then return 0; fi
    first=$(head -n 1 "$nb")
    case $first in 'nextboot_enable="YES"'*) ;; *) return 0 ;; esac
    say "loading $nb (one-shot)"
    parse "$nb"
    # Rewrite the first line, and only it, in place: the "YES" line and the
    # "NO " line (with its trailing space) have the same length.
    printf 'nextboot_enable="NO" ' | dd of="$nb" conv=notrunc 2>/dev/null
    sync
    setenv nextboot_enable NO
}

# is_elf FILE: the loader loads ELF images only.
is_elf() { [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# load_kernel: set kernel_path and module_path as the loader does; status 1
# when no kernel could be loaded.
load_kernel() {
    kernel=$(getenv kernel) || kernel=kernel
    bootfile=$(getenv bootfile) || bootfile=kernel
    module_path=$(getenv module_path) || module_path=
    for dir in "/boot/$kernel" "$kernel"; do
        for b in $(echo "$bootfile;kernel" | tr ';' ' '); do
            if is_elf "$dir/$b"; then
                say "loaded kernel $dir/$b"
                setenv kernel_path "$dir"
                setenv module_path "$dir${module_path:+;$module_path}"
                return 0
            elif [ -e "$dir/$b" ]; then
                say "$dir/$b: not an ELF kernel"
            fi
        done
    done
    if is_elf "$kernel"; then say "loaded kernel $kernel"; return 0; fi
    say "failed to load kernel '$kernel'"
    return 1
}

read_conf /boot/defaults/loader.conf top
unsetenv loader_conf_files      # the loader never passes it to the kernel
check_nextboot
load_kernel || exit 3
