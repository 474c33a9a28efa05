"""Switch: move a host's boot selection between generations it already has
(rollback, or confirming a trial). Nothing in the store changes."""

import os
import re
import socket

from fruixops.remote import hostreply
from fruixops.rollout.bootstrap import install_receiver_if_missing


def rollback(hc, to=None):
    """Make generation *to* (default: the host's rollback generation) current;
    return the new current generation number."""
    install_receiver_if_missing(hc)
    args = ["rollback", str(to) if to is not None else "-", deployer_identity()]
    return _current(hc, "rollback", hc.check(hc.receiver(*args)).out)


def confirm(hc, generation):
    install_receiver_if_missing(hc)
    out = hc.check(hc.receiver("confirm", generation, deployer_identity())).out
    return _current(hc, "confirm", out)


def _current(hc, what, out):
    """The receiver's answer "current N" (notes may precede it)."""
    lines = out.splitlines()
    last = lines[-1] if lines else ""
    if not last.startswith("current "):
        raise hostreply.MalformedReply(hc.name, what, last)
    return hostreply.number(hc.name, what, last[len("current "):], last)


def deployer_identity():
    """user@host of the controller, recorded in a generation's provenance."""
    import pwd
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    user = os.environ.get("SUDO_USER") or name
    # One word of the receiver's argument alphabet (it travels through
    # restricted keys too).
    return re.sub(r"[^A-Za-z0-9._:@=+-]", "_", f"{user}@{socket.gethostname()}")
