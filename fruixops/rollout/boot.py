"""Boot: reboot a host, wait for it to come back, and read what it booted.

A reboot shows as a new ``kern.boottime``: the host is back when it answers
with a boot time other than the one it had before the reboot command. (A
dropped connection during the reboot is expected; a host that has not gone
down yet still answers with its old boot time.) What it booted is what the
loader handed the kernel: ``kenv fruix.generation`` / ``fruix.system``.
"""

import re
import time

from fruixops.remote import hoststate
from fruixops.remote.connection import CommandTimeout, HostConnection
from fruixops.errors import HostError, HostUnreachable

DEFAULT_REBOOT_COMMAND = "shutdown -r now"
BOOTTIME_COMMAND = "sysctl -n kern.boottime"
_BOOTTIME = re.compile(r"^\{\s*sec\s*=\s*(\d+),\s*usec\s*=\s*(\d+)\s*\}")


def parse_boottime(text):
    """"SEC.USEC" from `sysctl -n kern.boottime` output, or None."""
    m = _BOOTTIME.match(text.strip())
    return f"{m.group(1)}.{m.group(2)}" if m else None


def boottime(hc):
    r = hc.query(hc.access.boottime())
    found = parse_boottime(r.out) if r.status == 0 else None
    if found is None:
        raise HostError(hc.name, "cannot read kern.boottime (sysctl -n kern.boottime): "
                                 "fruixops needs it to tell that the host rebooted")
    return found


def reboot(hc, timeout=None, before=None):
    """Reboot the host behind *hc* (which is closed); return a new open
    HostConnection to the host once it has booted again. *before* is its
    boot time, when the caller has already read it."""
    host = hc.host
    timeout = timeout or host.var("reboot_timeout", 300)
    # Through a restricted key or doas, the receiver reboots (shutdown -r
    # now, under its lock): reboot_command is for root access only.
    command = (hc.receiver("reboot") if hc.access.restricted
               else host.var("reboot_command", DEFAULT_REBOOT_COMMAND))
    before = before or boottime(hc)
    try:
        hc.run(command)
    except (HostUnreachable, CommandTimeout):
        pass        # the host went down under us, as it should (or is going)
    hc.close()
    back = wait_for_boot(host, hc.known_hosts, timeout, since=before)
    back.controller = hc.controller
    return back


def wait_for_boot(host, known_hosts, timeout, since=None):
    """Wait until the host answers with a boot time other than *since* (any
    boot time, when *since* is None); return an open HostConnection."""
    deadline = time.monotonic() + timeout
    while True:
        hc = HostConnection(host, known_hosts, connect_timeout=3)
        try:
            hc.open()
            left = max(1.0, min(hc.query_timeout, deadline - time.monotonic()))
            r = hc.query(hc.access.boottime(), timeout=left)
            now = parse_boottime(r.out) if r.status == 0 else None
            if now is not None and now != since:
                return hc
        except (HostUnreachable, CommandTimeout):
            pass
        hc.close()
        if time.monotonic() > deadline:
            raise HostUnreachable(host.name, f"did not come back within {timeout}s of a reboot")
        time.sleep(0.25)


def state(hc):
    """The host's state (generations, current, booted...) in one round trip."""
    result = hc.query(hc.access.status())
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    return hoststate.parse(result.out, hc.name)
