#!/bin/sh
# The lab's boot loader and init for one host: PID 1 of the host's own PID
# namespace, inside its own mount namespace.
#
# It mounts the host's disk over the real absolute paths (/frx, /root,
# /var/lib/fruix) and a fresh /run and /tmp, resolves the boot selection the way a
# loader would (the one-shot next-boot selection if present, consumed;
# otherwise `current`), points /run/current-system at that generation's
# closure, runs its activation hook and starts sshd. A host with no generation
# boots bare. A closure whose kernel the lab refuses (metadata boots=no) stops
# the boot: the host never comes up (exit 3) until it is power-cycled.
# SIGTERM (the lab's reboot command, `kill -TERM 1`) ends every process; the
# supervisor then boots the host again from its disk.
#
# Usage: boot.sh HOSTDIR TAR [FRX_TMPFS_MB]
#   TAR: gnu or bsdtar. FRX_TMPFS_MB: give the host a small, empty tmpfs as
#   /frx instead of its disk (for disk-full tests; it does not survive a boot).
set -eu
hostdir=$1
tar_kind=${2:-gnu}
frx_mb=${3:-}

if [ -n "$frx_mb" ]; then
    mount -t tmpfs -o "size=${frx_mb}m,mode=0755" lab-frx /frx
else
    mount --bind "$hostdir/root/frx" /frx
fi
mount --bind "$hostdir/root/var/lib/fruix" /var/lib/fruix
# The host's own home for root, not the controller's (and its shell start-up).
mkdir -p "$hostdir/root/root"
mount --bind "$hostdir/root/root" /root
mount -t tmpfs -o mode=0755 lab-run /run
# sshd's configuration and keys, at a path that stays visible once the host's
# own /tmp covers the real one (the project itself may live under /tmp).
mkdir -p /run/lab
mount --bind "$hostdir" /run/lab
mount -t tmpfs -o mode=1777 lab-tmp /tmp
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ "$tar_kind" = bsdtar ]; then
    mount --bind "$(command -v bsdtar)" "$(command -v tar)"
fi

sys=/var/lib/fruix/system
selection=
if [ -L "$sys/next-boot" ]; then
    selection=$(readlink "$sys/next-boot")
    rm -f "$sys/next-boot"           # one-shot: consumed by this boot
    echo "lab boot: trying next-boot selection $selection"
elif [ -L "$sys/current" ]; then
    selection=$(readlink "$sys/current")
fi
if [ -n "$selection" ]; then
    closure=$(readlink "$sys/$selection/closure")
    if [ ! -d "$closure" ] || [ ! -f "$closure/metadata" ]; then
        echo "lab boot: $selection: closure $closure is missing; host halted" >&2
        exit 3
    fi
    if grep -qx 'boots=no' "$closure/metadata"; then
        echo "lab boot: $selection: kernel refused to boot; host halted" >&2
        exit 3
    fi
    ln -s "$closure" /run/current-system
    sh "$closure/activate" "$closure" || echo "lab boot: activation hook failed" >&2
    echo "lab boot: booted $selection ($closure)"
else
    echo "lab boot: no generation; booting bare"
fi

/usr/sbin/sshd -D -e -f /run/lab/sshd_config &
sshd=$!
trap 'kill -TERM "$sshd" 2>/dev/null; exit 0' TERM INT
wait "$sshd"
