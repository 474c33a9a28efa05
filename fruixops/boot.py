"""Boot: reboot a host, wait for it to come back, and read what it booted.

A dropped connection during the reboot is expected. Before rebooting, a marker
is left on the host's /run (a tmpfs, empty after every boot), so that a host
which has not gone down yet is never mistaken for one that came back.
"""

import time

from . import hoststate, receiver
from .connection import HostConnection
from .errors import HostError, HostUnreachable

MARKER = "/run/fruixops/reboot-pending"
DEFAULT_REBOOT_COMMAND = "shutdown -r now"


def reboot(hc, timeout=None):
    """Reboot the host behind *hc* (which is closed); return a new open
    HostConnection to the host once it is back."""
    host = hc.host
    timeout = timeout or host.var("reboot_timeout", 300)
    command = host.var("reboot_command", DEFAULT_REBOOT_COMMAND)
    try:
        hc.run(f"mkdir -p /run/fruixops && touch {MARKER} && {command}")
    except HostUnreachable:
        pass        # the host went down under us, as it should
    hc.close()
    return wait_for_boot(host, hc.known_hosts, timeout)


def wait_for_boot(host, known_hosts, timeout):
    deadline = time.monotonic() + timeout
    while True:
        hc = HostConnection(host, known_hosts, connect_timeout=3)
        try:
            hc.open()
            if hc.run(f"test -e {MARKER} && echo pending || echo up").out.strip() == "up":
                return hc
        except HostUnreachable:
            pass
        hc.close()
        if time.monotonic() > deadline:
            raise HostUnreachable(host.name, f"did not come back within {timeout}s of a reboot")
        time.sleep(0.25)


def state(hc):
    """The host's state (generations, current, booted...) in one round trip."""
    result = hc.run(receiver.status_command())
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    return hoststate.parse(result.out)
