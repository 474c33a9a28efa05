#!/bin/sh
# FreeBSD's own init on a bare lab host (no init_exec: never installed with
# Fruix): what init(8) and /etc/rc leave running on a fresh installation
# with sshd_enable="YES" -- sshd, and nothing else. boot.sh execs it as PID
# 1; on SIGTERM (the lab's reboot, `kill -TERM 1`) it stops sshd and exits,
# so the machine reboots. A Fruix system boots lab/sbin/shepherd instead.
set -u
/usr/sbin/sshd -D -e -f /run/lab/sshd_config &
sshd=$!
trap 'kill -TERM "$sshd" 2>/dev/null; exit 0' TERM INT
wait "$sshd"
