#!/bin/sh
# The lab's stand-in for FreeBSD's init(8) on a host with no init_exec (a
# bare FreeBSD installation): it runs `/bin/sh /etc/rc autoboot`, as init
# does for a multi-user boot; when rc fails, FreeBSD's init goes single-user
# (the console asks for a shell; nothing answers on the network): here the
# host halts, exit 1, until it is power-cycled. Then it waits, as init
# waits on its gettys, until SIGTERM (the lab's reboot) ends the host.
if ! /bin/sh /etc/rc autoboot; then
    echo "init: /bin/sh on /etc/rc terminated abnormally, going to single user mode" >&2
    exit 1
fi
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
