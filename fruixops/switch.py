"""Switch: move a host's boot selection between generations it already has
(rollback, or confirming a trial). Nothing in the store changes."""

from . import hostreply
from .bootstrap import install_receiver_if_missing
from .controller import deployer_identity


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
