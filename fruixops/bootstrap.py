"""Bootstrap: put the receiver on a host, record the name it answers to, and,
on first contact only, the public keys it trusts.

Trust is explicit: a host trusts the keys installed here from the inventory's
``trusted_keys`` when it trusted none before (first contact), or added with
``trust.add`` on a statement signed by a key it already trusts. A deploy never
makes a host trust a key because that key signed a manifest.
"""

from . import bundle, receiver, trust
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
    return bundle.small_tar({f"{name}.pem": pem for name, pem in trusted_keys})


def trust_add(hc, name, pem, signing_key, signer):
    """Make the host trust key *name*: a change signed with *signing_key*,
    which the host must already trust."""
    install_receiver_if_missing(hc)
    return hc.check(receiver.command("trust-add", name),
                    stdin=trust.change(hc.name, "add", name, signing_key, signer, pem)).out


def trust_remove(hc, name, signing_key, signer):
    install_receiver_if_missing(hc)
    return hc.check(receiver.command("trust-remove", name),
                    stdin=trust.change(hc.name, "remove", name, signing_key, signer)).out


def install_receiver_if_missing(hc):
    """Install the receiver when it is missing or outdated (one short probe)."""
    if hc.run(receiver.probe()).out.strip() != "current":
        install_receiver(hc)
