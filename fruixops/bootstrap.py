"""Bootstrap: put the receiver on a host, record the name it answers to, and,
on first contact only, the public keys it trusts.

Trust is explicit: a host trusts the keys installed here from the inventory's
``trusted_keys`` when it trusted none before, or added with ``trust.add``.
A deploy never makes a host trust a key because that key signed a manifest.
"""

import io
import tarfile

from . import receiver
from .errors import HostError


def install_receiver(hc):
    out = hc.check(receiver.install_command(), stdin=receiver.source()).out.strip()
    if out != receiver.version():
        raise HostError(hc.name, f"receiver install did not verify (got {out[:16]}...)")


def bootstrap(hc, trusted_keys):
    """Install or update the receiver; record the host name; trust the
    inventory's keys if the host trusts none yet. Returns the receiver's lines."""
    install_receiver(hc)
    lines = [hc.check(receiver.command("set-host-name", hc.name)).out]
    lines.append(hc.check(receiver.command("trust-init"), stdin=key_bundle(trusted_keys)).out)
    return "".join(lines)


def key_bundle(trusted_keys):
    """A tar of NAME.pem files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, pem in trusted_keys:
            info = tarfile.TarInfo(f"{name}.pem")
            info.size, info.mode, info.mtime = len(pem), 0o444, 1
            tar.addfile(info, io.BytesIO(pem))
    return buf.getvalue()


def trust_add(hc, name, pem):
    install_receiver_if_missing(hc)
    return hc.check(receiver.command("trust-add", name), stdin=pem).out


def trust_remove(hc, name):
    install_receiver_if_missing(hc)
    return hc.check(receiver.command("trust-remove", name)).out


def install_receiver_if_missing(hc):
    if hc.run(receiver.if_current("status")).out.startswith(receiver.OUTDATED):
        install_receiver(hc)
