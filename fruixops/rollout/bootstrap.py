"""Bootstrap: put the receiver on a host, record the name it answers to, and,
on first contact only, the public keys it trusts.

Trust is explicit: a host trusts the keys installed here from the inventory's
``trusted_keys`` when it trusted none before (first contact), or added with
``trust.add`` on a statement signed by a key it already trusts. A deploy never
makes a host trust a key because that key signed a manifest.
"""

import shlex

from fruixops.remote import bundle, trust
from fruixops.errors import HostError
from fruixops.remote.receiver import (install_receiver, install_receiver_if_missing,  # noqa: F401
                                      receiver_state)


def bootstrap(hc, trusted_keys):
    """Install or update the receiver; record the host name; trust the
    inventory's keys if the host trusts none yet. Returns the receiver's lines."""
    state = receiver_state(hc)
    if hc.access.restricted and state == "missing":
        raise HostError(hc.name, "no fruixops receiver on this host, and this restricted "
                                 "access cannot install one: run `inv keys.authorize` "
                                 "as an administrator (docs/access.md)")
    # These change the host: command_timeout, even inside a plan's read.
    with hc.working():
        if state != "current":
            install_receiver(hc)
        lines = [hc.check(hc.receiver("set-host-name", hc.name)).out]
        lines.append(hc.check(hc.receiver("trust-init"), stdin=key_bundle(trusted_keys)).out)
        lines.append(secret_key(hc))
    return "".join(lines)


def secret_key(hc):
    """The host's secret key pair, made by the host on first contact (its
    private key never leaves it); its public key recorded on the controller
    when none is (fruixops.system.secrets.hostkeys). A line saying which."""
    from fruixops.system.secrets import deliver, hostkeys, seal
    der = deliver.parse_key(hc.name, hc.check(hc.receiver("secrets-key")).out)
    shown = seal.key_id(der)[:16]
    ctl = getattr(hc, "controller", None)
    if ctl is None:
        return f"secret key {shown}\n"
    known = hostkeys.recorded(ctl.inventory, hc.name)
    if known is None:
        hostkeys.record(ctl.inventory, hc.name, der)
        return f"secret key {shown} recorded in {hostkeys.path(ctl.inventory)}\n"
    if known != der:
        return (f"warning: its secret key {shown} is not the one recorded "
                f"({seal.key_id(known)[:16]}): `inv secrets.rotate-key --host {hc.name}` "
                "records a new one\n")
    return f"secret key {shown}\n"


def key_bundle(trusted_keys):
    """A tar of NAME.pem files."""
    return bundle.small_tar({f"{name}.pem": pem for name, pem in trusted_keys})


def trust_add(hc, name, pem, signing_key, signer):
    """Make the host trust key *name*: a change signed with *signing_key*,
    which the host must already trust."""
    install_receiver_if_missing(hc)
    return hc.check(hc.receiver("trust-add", name),
                    stdin=trust.change(hc.name, "add", name, signing_key, signer, pem)).out


def trust_remove(hc, name, signing_key, signer):
    install_receiver_if_missing(hc)
    return hc.check(hc.receiver("trust-remove", name),
                    stdin=trust.change(hc.name, "remove", name, signing_key, signer)).out


def admin_connection(ctl, host, admin_user="root", admin_key=None):
    """A root connection to *host* for an administrator's one-time set-up:
    the inventory's address and host key, but *admin_user* (root) and
    *admin_key* (default: the agent and ~/.ssh keys), never the deploy key's
    restrictions."""
    from dataclasses import replace

    from fruixops.remote.connection import HostConnection
    from fruixops.errors import UserError
    if admin_user != "root":
        raise UserError("the administrator's account for keys.authorize must be root "
                        "(it writes root's authorized_keys and installs the receiver)")
    # A copy, not a comprehension: that would render every templated value.
    admin_vars = host.vars.copy()
    for key in ("restricted_key", "become", "become_user", "ansible_become",
                "ansible_become_method", "ssh_key"):
        if key in admin_vars:
            del admin_vars[key]
    admin_vars["ssh_user"] = admin_user
    if admin_key:
        admin_vars["ssh_key"] = admin_key
    hc = HostConnection(replace(host, vars=admin_vars), ctl.inventory.settings.known_hosts)
    hc.controller = ctl
    return hc.open()


def authorize_deploy_key(hc, trusted_keys, key_line, file, revoke=()):
    """As root on the host (an administrator's connection): install the
    receiver and the trusted keys (so a deploy key never gets first contact),
    then restrict *key_line* to the receiver in *file*, removing the keys of
    *revoke* (a rotated-out deploy key). Returns the receiver's lines."""
    from fruixops.remote import access
    lines = bootstrap(hc, trusted_keys)
    quoted = shlex.quote(file)
    r = hc.query(f"cat {quoted} 2>/dev/null; exit 0")
    text = r.stdout.decode(errors="replace")
    for old in revoke:
        blob = old.split()[1]
        text = "".join(ln + "\n" for ln in text.splitlines() if blob not in ln.split())
    text = access.authorize(text, key_line)
    hc.check(f"set -e; f={quoted}; d=$(dirname \"$f\"); mkdir -p \"$d\"; chmod 700 \"$d\"; "
             "umask 077; cat >\"$f.new.$$\"; mv -f \"$f.new.$$\" \"$f\"", stdin=text.encode())
    return lines + f"authorized {key_line.split()[0]} {key_line.split()[1][-12:]} in {file}\n"
