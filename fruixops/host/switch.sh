# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): generations and what the
# host boots.
#
# FreeBSD's loader decides what boots, so the loader's files are the truth:
#   /boot/loader.conf.d/fruix.conf  the default: written whole (temporary
#       file, flushed, renamed) by switch, rollback and confirm; that rename
#       is their commit point. The links and records under
#       /var/lib/fruix/system (current, rollback, current-generation,
#       rollback-generation) and the gcroots follow it, for people and for
#       Fruix's `fruix system status`; a receiver killed in between leaves
#       them behind, and the next one brings them in line (reconcile).
#   /boot/nextboot.conf  a one-shot trial: nextboot(8) where the host has it,
#       else the same UFS form written here. The loader rewrites its first
#       line to nextboot_enable="NO" as it boots it.
# What booted is what the loader handed the kernel: kenv fruix.generation.

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

# generation_sound N: its record is whole: a manifest from its format line to
# its end line, naming its closure among its items (an empty or cut record,
# as a power loss without flushing leaves, is corrupt, never "complete").
generation_sound() {
    m=$GENS/$1/manifest
    [ -s "$m" ] && [ "$(tail -n 1 "$m")" = end ] || return 1
    case $(head -n 1 "$m") in "fruixops-manifest 2"|"fruixops-manifest 3") ;; *) return 1 ;; esac
    c=$(readlink "$GENS/$1/closure" 2>/dev/null) || return 1
    awk -v c="$c" '$1 == "item" && $2 == c { f = 1 } END { exit !f }' "$m"
}

generation_complete() { # N: sound, and every item its manifest lists is in the store
    generation_sound "$1" || return 1
    absent=$(awk '$1 == "item" { print $2 }' "$GENS/$1/manifest" | while read -r p; do
        [ -d "$p" ] || echo "$p"
    done)
    [ -z "$absent" ]
}

# record_generation DEPLOYER: the manifest just received becomes generation
# NEWGEN (its files complete and flushed before the rename that shows it).
record_generation() {
    NEWGEN=$(($(last_generation) + 1))
    g=$GENS/.new.$$
    mkdir -p "$GENS"
    rm -rf "$g"
    mkdir "$g"
    cp "$TMP/bundle/manifest" "$TMP/bundle/manifest.sig" "$g/"
    ln -s "$M_SYSTEM" "$g/closure"
    {
        echo "received=$(date +%s)"
        echo "deployer=$1"
        echo "signer=$SIGNER"
        echo "base=$M_BASE"
        echo "version-label=$M_LABEL"
        echo "serial=$M_SERIAL"
    } >"$g/provenance"
    flush "$g/manifest" "$g/manifest.sig" "$g/provenance" "$g"
    mv "$g" "$GENS/$NEWGEN"
    flush "$GENS"
    mkdir -p "$GCROOTS"
    replace_link "$M_SYSTEM" "$GCROOTS/system-$NEWGEN"
}

# --- loader files -----------------------------------------------------------

# generation_boot N: what the loader needs to boot generation N: G_SYSTEM
# (the closure), G_KERNEL (its kernel item's kernel directory), G_INIT (the
# system's init_exec hand-over). Refused unless all are there and the kernel
# item is one the generation's signed manifest names.
generation_boot() {
    [ -d "$GENS/$1" ] || die "no generation $1"
    G_SYSTEM=$(readlink "$GENS/$1/closure") || die "generation $1 has no closure"
    k=$(readlink "$G_SYSTEM/kernel" 2>/dev/null) || die "generation $1: its system has no kernel"
    awk -v k="$k" '$1 == "item" && $2 == k { f = 1 } END { exit !f }' "$GENS/$1/manifest" ||
        die "generation $1: kernel $k is not in its signed manifest"
    G_KERNEL=$k/boot/kernel
    [ -d "$G_KERNEL" ] || die "generation $1: no kernel directory $G_KERNEL"
    G_INIT=$G_SYSTEM/boot/init
    [ -f "$G_INIT" ] || die "generation $1: its system has no boot/init (built by an older fruixops)"
}

# loader_vars N: generation N as loader variables (after generation_boot N).
loader_vars() {
    printf 'kernel="%s"\nfruix.system="%s"\nfruix.generation="%s"\ninit_exec="%s"\n' \
        "$G_KERNEL" "$G_SYSTEM" "$1" "$G_INIT"
    # The system's loader tunables (loader_tunables:), with the boot entry
    # they belong to: name="value" lines only, never one fruixops sets.
    if [ -f "$G_SYSTEM/config/loader-tunables" ]; then
        grep -E '^[A-Za-z_][A-Za-z0-9_.-]*="[^"\\$]*"$' "$G_SYSTEM/config/loader-tunables" |
            grep -Ev '^(kernel|init_exec|init_path|bootfile|module_path|loader_conf_files|loader_conf_dirs|nextboot_conf|nextboot_enable|currdev|rootdev|kernels|kernel_options|fruix\.[^=]*|vfs\.root\.mountfrom)=' || :
    fi
}


# FreeBSD's rc reads the booted system's rc.conf last: the host's
# /etc/rc.conf adds it to rc_conf_files (defaults/rc.conf's source_rc_confs
# reads a list that rc.conf itself extends). One line, added once before
# the first switch; the rest of the file stays the administrator's.
RC_CONF=/etc/rc.conf
# shellcheck disable=SC2016 # rc.conf text: rc expands it
RC_HOOK='rc_conf_files="${rc_conf_files} /run/current-system/etc/rc.conf" # fruixops: the booted system'"'"'s rc.conf'

rc_conf_hook() {
    if grep -Fqx "$RC_HOOK" "$RC_CONF" 2>/dev/null; then return 0; fi
    if [ -L "$RC_CONF" ] || { [ -e "$RC_CONF" ] && ! root_file "$RC_CONF"; }; then
        die "$RC_CONF is not a regular file of root's; not changed (add: $RC_HOOK)"
    fi
    { cat "$RC_CONF" 2>/dev/null || :; echo "$RC_HOOK"; } | publish "$RC_CONF"
}

# TRIAL records a one-shot trial until it is confirmed or another default is
# made: on ZFS nextboot(8) keeps the one-shot in the pool's label, where the
# receiver cannot see it, and gc must still keep the trial's generation.
TRIAL=$STATE/trial

set_nextboot() { # N: boot generation N once, at the next boot
    generation_boot "$1"
    rc_conf_hook
    echo "$1" | publish "$TRIAL"
    if command -v nextboot >/dev/null 2>&1; then
        nextboot -f -k "$G_KERNEL" -e "fruix.system=$G_SYSTEM" -e "fruix.generation=$1" \
            -e "init_exec=$G_INIT" >&2 || die "nextboot failed"
        echo "one-shot nextboot(8)"
    else
        # 0600, as nextboot(8) writes it
        { echo 'nextboot_enable="YES"'; loader_vars "$1"; } | publish "$NEXTBOOT_CONF" 600
        echo "one-shot nextboot.conf"
    fi
}

clear_nextboot() {
    [ -e "$NEXTBOOT_CONF" ] || return 0
    if command -v nextboot >/dev/null 2>&1; then nextboot -D; else rm -f "$NEXTBOOT_CONF"; fi
    flush "$BOOT"
}

# make_default N: generation N is what the loader boots from now on. The
# rename of fruix.conf is the commit point; a pending one-shot is cleared
# first, the links follow after.
make_default() {
    generation_complete "$1" || die "generation $1 is incomplete or corrupt; not switching to it"
    generation_boot "$1"
    rc_conf_hook
    previous=$(loader_default)
    [ -n "$previous" ] || previous=$(gen_of "$SYSTEM/current")
    unparsed=$(fruix_conf_unparsed)
    [ -z "$unparsed" ] || [ ! -f "$LOADER_CONF" ] ||
        die "$LOADER_CONF:${unparsed%% *}: ${unparsed#* }; fruixops does not overwrite a file it cannot read as the loader does (remove or fix it)"
    clear_nextboot
    rm -f "$TRIAL"
    {
        echo "# Written by fruixops: the generation this host boots by default."
        echo "# Read by FreeBSD's loader (loader.conf.d); see inv status."
        loader_vars "$1"
    } | publish "$LOADER_CONF"
    links_follow "$1" "$previous"
}

# links_follow N OLD: current -> N and, when OLD differs, rollback -> OLD;
# the gcroots and Fruix's records with them.
links_follow() {
    mkdir -p "$GCROOTS"
    if [ -n "$2" ] && [ "$2" != "$1" ] && [ -d "$GENS/$2" ]; then
        replace_link "generations/$2" "$SYSTEM/rollback"
        replace_link "$(readlink "$GENS/$2/closure")" "$GCROOTS/rollback-system"
        echo "$2" | publish "$SYSTEM/rollback-generation"
    fi
    replace_link "generations/$1" "$SYSTEM/current"
    replace_link "$(readlink "$GENS/$1/closure")" "$GCROOTS/current-system"
    echo "$1" | publish "$SYSTEM/current-generation"
    rm -f "$SYSTEM/next-boot"      # an earlier fruixops's link; no loader read it
    flush "$SYSTEM" "$GCROOTS"
}

# reconcile: under the lock, bring the links in line with the loader's
# default (a receiver killed after the commit, or fruix.conf edited by hand);
# on a host deployed before fruixops wrote loader files, make its current
# generation the loader's default.
# A fruix.conf the loader reads otherwise than fruixops would ($ expansion,
# escapes, lines it skips) is the administrator's: reported, never rewritten.
reconcile() {
    d=$(loader_default)
    c=$(gen_of "$SYSTEM/current")
    unparsed=$(fruix_conf_unparsed)
    if [ -n "$unparsed" ] && [ -f "$LOADER_CONF" ]; then
        echo "note: $LOADER_CONF:${unparsed%% *}: ${unparsed#* }; left as it is" >&2
    elif [ -z "$d" ]; then
        if [ -n "$c" ] && [ -f "$(readlink "$GENS/$c/closure")/boot/init" ] &&
                generation_complete "$c"; then
            echo "note: generation $c becomes the loader's default ($LOADER_CONF)" >&2
            make_default "$c"
        fi
    elif [ "$d" != "$c" ] && [ -d "$GENS/$d" ]; then
        echo "note: the links follow the loader's default, generation $d" >&2
        links_follow "$d" "$c"
    fi
}

# --- commands ---------------------------------------------------------------

cmd_confirm() {
    n=${1:-}
    case $n in ''|*[!0-9]*) die "confirm needs a generation number" ;; esac
    lock "${2:-}"
    clean_leftovers
    reconcile
    [ -d "$GENS/$n" ] || die "no generation $n"
    booted=$(kenv -q fruix.generation 2>/dev/null) || booted=
    [ "$booted" = "$n" ] || die "generation $n has not booted (booted: ${booted:-unknown}); only a booted trial can be confirmed"
    # A generation booted on another kernel (a kernel= the loader read after
    # fruix.conf) did not boot as it would from now on. No kernelname (an
    # older loader, or the lab's before it had one): unknown, not a mismatch.
    kernel=$(booted_kernel)
    want=$(generation_kernel_file "$n")
    if [ -n "$kernel" ] && [ "$kernel" != "$want" ]; then
        die "generation $n booted kernel $kernel, not its own ($want); not confirmed"
    fi
    make_default "$n"
    echo "current $n"
}

cmd_rollback() {
    lock "${2:-}"
    clean_leftovers
    reconcile
    n=${1:-}
    [ "$n" != - ] || n=     # "-": the rollback generation (a word a restricted key can send)
    if [ -z "$n" ]; then
        n=$(gen_of "$SYSTEM/rollback")
        [ -n "$n" ] || die "no rollback generation"
    fi
    case $n in *[!0-9]*) die "bad generation number '$n'" ;; esac
    [ -d "$GENS/$n" ] || die "no generation $n"
    make_default "$n"
    echo "current $n"
}

print_state() {
    LOADER_WALK=$(loader_walk; echo .)
    echo "host-name $(cat "$STATE/host-name" 2>/dev/null || echo -)"
    echo "last-serial $(cat "$STATE/last-serial" 2>/dev/null || echo 0)"
    echo "booted-generation $(kenv -q fruix.generation 2>/dev/null || :)"
    echo "booted $(kenv -q fruix.system 2>/dev/null || :)"
    echo "booted-kernel $(booted_kernel)"
    echo "boottime $(boottime)"
    echo "default $(loader_default)"
    echo "next-boot $(pending_generation)"
    echo "current $(gen_of "$SYSTEM/current")"
    echo "rollback $(gen_of "$SYSTEM/rollback")"
    loader_overrides | while IFS= read -r f; do echo "loader-override $f"; done
    echo "boot-fs $(boot_fs)"
    if [ -f "$TRIAL" ]; then echo "trial $(cat "$TRIAL")"; fi
    if [ -L "$LOCK" ]; then echo "lock $(readlink "$LOCK")"; fi
}

cmd_status() {
    print_state
    print_generations
    if [ $# -gt 0 ]; then
        esp_option status "$@"
        print_bootloader "$ESP"
    fi
}

print_generations() {
    for g in "$GENS"/*; do
        n=$(basename "$g")
        case $n in ''|*[!0-9]*) continue ;; esac
        p=$g/provenance
        generation_sound "$n" || echo "corrupt-generation $n"
        printf 'generation %s closure=%s kernel=%s size=%s received=%s deployer=%s signer=%s base=%s version-label=%s\n' \
            "$n" "$(readlink "$g/closure")" "$(generation_kernel_file "$n")" \
            "$(awk '$1 == "item" { s += $4 } END { print s + 0 }' "$g/manifest")" \
            "$(sed -n 's/^received=//p' "$p")" "$(sed -n 's/^deployer=//p' "$p")" \
            "$(sed -n 's/^signer=//p' "$p")" "$(sed -n 's/^base=//p' "$p")" \
            "$(sed -n 's/^version-label=//p' "$p")"
    done
}

# --- the bootloader -----------------------------------------------------------
# Not per generation: one loader.efi on the ESP (and in /boot) and one
# /boot/lua serve every generation. Installed only when asked, the previous
# copy kept beside it (.old), as freebsd-update keeps kernel.old.

# esp_option COMMAND [--esp DIR]: set ESP, where the EFI system partition is
# mounted (default /boot/efi; an absolute path).
esp_option() {
    what=$1
    shift
    ESP=/boot/efi
    while [ $# -gt 0 ]; do
        case $1 in
            --esp) shift; ESP=${1:-} ;;
            *) die "$what: unknown option '$1'" ;;
        esac
        shift
    done
    case $ESP in /*) ;; *) die "the ESP must be an absolute path" ;; esac
    if [ -e "$ESP" ] || [ -L "$ESP" ]; then
        root_only "$ESP" || esp_refused
    fi
}

esp_refused() {
    die "the ESP $ESP is not a directory only root controls (owned by root, writable by no one else, no symlink along its path)"
}

# root_only PATH: PATH and every directory above it are what only root
# controls: real directories (no symlink on the way), owned by root, not
# writable by group or others. A doas/sudo account names the ESP: the
# receiver must never read or write through a path that account could
# change (a link it planted, a directory it owns).
root_only() {
    p=$1
    while :; do
        [ -n "$(find "$p" -maxdepth 0 -type d -user 0 ! -perm -020 ! -perm -002 2>/dev/null)" ] ||
            return 1
        [ "$p" != / ] || return 0
        p=$(dirname "$p")
    done
}

# root_file PATH: PATH is a regular file (not a link) owned by root.
root_file() { [ -n "$(find "$1" -maxdepth 0 -type f -user 0 2>/dev/null)" ]; }

print_bootloader() { # ESP (checked by esp_option)
    f=$1/efi/freebsd/loader.efi
    if root_file "$f" && root_only "$(dirname "$f")"; then
        echo "bootloader-efi $(openssl dgst -sha256 -r "$f" | cut -c1-64)"
    else
        echo "bootloader-efi -"
    fi
    if [ -d "$BOOT/lua" ]; then
        echo "bootloader-lua $(listing "$BOOT/lua" | openssl dgst -sha256 -r | cut -c1-64)"
    else
        echo "bootloader-lua -"
    fi
}

# install_file SRC DEST: DEST becomes a copy of SRC; the previous DEST is kept
# as DEST.old. Each step a flushed temporary file (mktemp's) renamed into
# place, in a directory only root controls; the previous DEST is kept only
# when it is a regular file of root's.
install_file() {
    d=$(dirname "$2")
    mkdir -p "$d"
    root_only "$d" || die "$d is not a directory only root controls"
    if root_file "$2"; then
        old=$(temp_beside "$2.old")
        cp "$2" "$old"
        flush "$old"
        mv -f "$old" "$2.old"
    fi
    new=$(temp_beside "$2")
    cp "$1" "$new"
    flush "$new"
    mv -f "$new" "$2"
    flush "$d"
}

# A kill between the two renames of a /boot/lua install leaves no /boot/lua:
# the previous one comes back.
bootloader_recover() {
    if [ ! -e "$BOOT/lua" ] && [ -d "$BOOT/lua.old" ]; then
        mv "$BOOT/lua.old" "$BOOT/lua"
        echo "note: restored $BOOT/lua from an interrupted bootloader install" >&2
    fi
}

cmd_install_bootloader() {
    n=${1:-}
    case $n in ''|*[!0-9]*) die "install-bootloader needs a generation number" ;; esac
    shift
    esp_option install-bootloader "$@"
    esp=$ESP
    lock install-bootloader
    clean_leftovers
    [ -d "$GENS/$n" ] || die "no generation $n"
    generation_complete "$n" || die "generation $n is incomplete"
    b=$(readlink "$(readlink "$GENS/$n/closure")/bootloader" 2>/dev/null) ||
        die "generation $n: its system has no bootloader"
    awk -v k="$b" '$1 == "item" && $2 == k { f = 1 } END { exit !f }' "$GENS/$n/manifest" ||
        die "generation $n: bootloader $b is not in its signed manifest"
    [ -f "$b/boot/loader.efi" ] || die "$b has no boot/loader.efi"
    [ -d "$esp" ] || die "no ESP at $esp (set the host's esp_path)"
    root_only "$esp" || esp_refused
    install_file "$b/boot/loader.efi" "$esp/efi/freebsd/loader.efi"
    install_file "$b/boot/loader.efi" "$BOOT/loader.efi"
    if [ -d "$b/boot/lua" ]; then
        new=$BOOT/.lua.new.$$
        cp -R "$b/boot/lua" "$new"
        chmod -R u+w "$new"
        find "$new" -type f | while IFS= read -r f; do flush "$f"; done
        flush "$new"
        if [ -d "$BOOT/lua" ]; then
            rm -rf "$BOOT/lua.old"
            mv "$BOOT/lua" "$BOOT/lua.old"
        fi
        mv "$new" "$BOOT/lua"
        flush "$BOOT"
    fi
    echo "bootloader $b"
}
