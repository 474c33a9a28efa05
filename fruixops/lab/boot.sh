#!/bin/sh
# One lab machine booting: PID 1 of the host's own PID namespace, inside its
# own mount namespace. Each step stands for the FreeBSD mechanism it names:
#
#   disk      the host's disk (.lab/<host>/root) over the real absolute paths
#             (/boot, /frx, /root, /home, /usr/local/etc, /var/lib/fruix,
#             /var/log), a fresh /run and /tmp,
#             and its own accounts over /etc where it has some -- wherever
#             the checkout lives, even under a path the host covers;
#   loader    loader.sh reads /boot's loader files in FreeBSD's order,
#             consumes a one-shot nextboot.conf and loads the kernel, or
#             fails (the host halts, exit 3, until it is power-cycled);
#   kernel    its environment (the loader's variables) and its boot time are
#             what the lab's `kenv` and `sysctl kern.boottime` answer
#             (lab/sbin/ on the host's PATH as /usr/local/sbin; FreeBSD has
#             them in /bin and /sbin);
#   root      the root file system read-only, as the kernel mounts it, until
#             rc(8) remounts it (below; the lab's mount -uw /);
#   init      init_exec from the kernel environment replaces init as PID 1,
#             as FreeBSD's init(8) does: for a Fruix system, the system's
#             boot/init hand-over (FreeBSD's /etc/rc, activation, then
#             shepherd: the lab's, in Guile, lab/sbin/shepherd, with
#             (shepherd service) in Guile's site directory as a host's
#             shepherd package installs it). A host with no init_exec boots
#             FreeBSD's own init: init.sh runs /etc/rc autoboot, whose
#             rc.conf starts sshd (bare).
#
# SIGTERM (the lab's reboot command, `kill -TERM 1`) ends every process; the
# supervisor then boots the host again from its disk.
#
# Usage: boot.sh HOSTDIR TAR [FRX_TMPFS_MB] [NEXTBOOT]
#   TAR: gnu or bsdtar. FRX_TMPFS_MB: give the host a small, empty tmpfs as
#   /frx instead of its disk (for disk-full tests; it does not survive a boot).
#   NEXTBOOT: "yes" puts the lab's nextboot(8) on the host's PATH, as FreeBSD
#   base has it; other hosts have none and fruixops writes the file itself.
set -eu
hostdir=$1
tar_kind=${2:-gnu}
frx_mb=${3:-}
with_nextboot=${4:-}
lab=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$hostdir/root/boot" "$hostdir/root/root"
# The checkout may live anywhere, /tmp, /root and /run included, which this
# host covers with its own. So first hold the host's directory and the lab's
# programs open: a file descriptor names a directory whatever is later
# mounted over its path. From them, under the host's fresh /run, come
# /run/lab (the host's directory: its disk, sshd's keys and configuration)
# and /run/lab-programs; everything below uses only those. mount -c: the
# kernel follows /proc/self/fd/N itself; mount(8) would resolve the path the
# descriptor was opened by, which names something else (or nothing) once
# covered.
exec 7<"$hostdir" 8<"$lab"
mount -t tmpfs -o mode=0755 lab-run /run
mkdir /run/lab /run/lab-programs
mount -c --rbind /proc/self/fd/7 /run/lab       # --rbind: an image disk is a mount inside
mount -c --bind /proc/self/fd/8 /run/lab-programs
exec 7<&- 8<&-
disk=/run/lab/root
lab=/run/lab-programs

if [ -n "$frx_mb" ]; then
    mount -t tmpfs -o "size=${frx_mb}m,mode=0755" lab-frx /frx
else
    mount --bind "$disk/frx" /frx
fi
mount --bind "$disk/var/lib/fruix" /var/lib/fruix
mount --bind "$disk/boot" /boot
# The host's own home for root, not the controller's (and its shell start-up).
mount --bind "$disk/root" /root
# Its own /home and /usr/local/etc (the accounts and the packages'
# configuration fruixops manages there)), never the machine's.
mkdir -p "$disk/home" "$disk/usr/local/etc"
mount --bind "$disk/home" /home
mount --bind "$disk/usr/local/etc" /usr/local/etc
# Its own logs (shepherd's services write theirs under /var/log), never the
# machine's.
mkdir -p "$disk/var/log"
mount --bind "$disk/var/log" /var/log
mount -t tmpfs -o mode=1777 lab-tmp /tmp
# The host's own /etc (hostetc.py: its rc.conf, fstab, sshd_config, /etc/rc,
# accounts), over the machine's, which stays as it was: the overlay writes
# to etc.upper only, in this namespace.
mkdir -p /run/lab/etc.upper /run/lab/etc.work
mount -t overlay lab-etc \
    -o "lowerdir=/etc,upperdir=/run/lab/etc.upper,workdir=/run/lab/etc.work" /etc
mkdir -p /run/sshd          # sshd's privilege separation directory
chmod 0755 /run/sshd
if [ "$tar_kind" = bsdtar ]; then
    mount --bind "$(command -v bsdtar)" "$(command -v tar)"
fi

# The kernel's memory: what the loader handed over, and when it booted.
mkdir -p /run/lab-kernel
mount -t tmpfs -o size=1m,mode=0755 lab-kernel /run/lab-kernel
if ! sh "$lab/loader.sh" /run/lab-kernel/kenv; then
    echo "lab boot: no kernel could be loaded; host halted at the loader prompt" >&2
    exit 3
fi
rm -f /run/lab-kernel/kenv.loaded
now=$(date +%s.%N)
echo "${now%.*} $(echo "${now#*.}" | cut -c1-6)" >/run/lab-kernel/boottime
mount -o remount,ro /run/lab-kernel

mount --bind "$lab/sbin" /usr/local/sbin
# Guile's site directory (/usr/share/guile/site/3.0, on its default load
# path) holds the lab's (shepherd service), as a host's shepherd package
# installs its modules there. The machine has no site directory: a
# read-only overlay adds one to /usr/share/guile in this namespace only.
if [ -d /usr/share/guile ]; then
    mkdir -p /run/lab-guile/site/3.0
    mount -t overlay lab-guile -o lowerdir=/run/lab-guile:/usr/share/guile /usr/share/guile
    mount --bind "$lab/guile" /usr/share/guile/site/3.0
fi
if [ "$with_nextboot" = yes ]; then
    mount --bind "$lab/freebsd" /usr/local/bin
fi
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# The kernel mounts a FreeBSD host's root file system read-only; rc(8)'s
# rc.d/root remounts it read-write (the lab's mount -uw / does, from this
# list). On the lab that root is /, the host's disk (/frx, /var/lib/fruix,
# /boot, /root) and its /etc: each is remounted read-only here, a bind
# remount that changes this namespace's view only, never the machine's file
# systems. /run and /tmp stay the writable tmpfs they are: /run stands for
# the tmpfs a Fruix boot/init mounts when /run is not writable, /tmp for
# rc.conf's tmpmfs. The lab's own bookkeeping (/run/lab, /run/lab-kernel,
# /run/lab-boot.log) is under /run.
: >/run/lab-boot.log
printf '%s\n' / /frx /var/lib/fruix /boot /root /home /usr/local/etc /var/log /etc >/run/lab-root-mounts
while read -r mp; do
    mount -o remount,bind,ro "$mp"
done </run/lab-root-mounts

init=$(kenv -q init_exec) || init=
if [ -n "$init" ] && [ -f "$init" ] && [ -x "$init" ]; then
    echo "lab boot: generation $(kenv -q fruix.generation || echo '?'): init_exec $init"
    exec "$init"
fi
[ -z "$init" ] || echo "lab boot: init_exec $init is not an executable file; ignored" >&2
echo "lab boot: no init_exec; FreeBSD's init"
exec sh "$lab/init.sh"
