"""Switch: move a host's boot selection between generations it already has
(rollback, or confirming a trial). Nothing in the store changes."""

from . import receiver
from .bootstrap import install_receiver_if_missing
from .controller import deployer_identity


def rollback(hc, to=None):
    """Make generation *to* (default: the host's rollback generation) current;
    return the new current generation number."""
    install_receiver_if_missing(hc)
    args = ["rollback", str(to) if to is not None else "", deployer_identity()]
    out = hc.check(receiver.command(*args)).out
    return int(out.split()[-1])


def confirm(hc, generation):
    install_receiver_if_missing(hc)
    out = hc.check(receiver.command("confirm", generation, deployer_identity())).out
    return int(out.split()[-1])
