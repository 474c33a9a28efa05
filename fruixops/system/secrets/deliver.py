"""Getting sealed secrets to a host: over SSH after a deploy's push or on
``inv secrets.rotate`` (one round trip: the host keeps them, then decrypts
the running system's into place), or in a bundle (``bundle.export``). The
cache never carries them.

Values are read from their sources before the host is touched (a failing
source fails that host's deploy with one line naming the secret), sealed
to the host's recorded key, wiped, and only the sealed bytes travel."""

import base64

from fruixops.remote import bundle, hostreply
from fruixops.errors import HostError, UserError
from fruixops.system.secrets import hostkeys, seal, sources
from fruixops.system.secrets.declare import declared


def resolve(host, names=None):
    """[(Secret, Value)]: the host's declared secrets (or those *names*), read."""
    secrets = declared(host)
    if names:
        known = {s.name for s in secrets}
        for n in names:
            if n not in known:
                raise UserError(f"{host.name} declares no secret {n!r} "
                                f"(it declares: {', '.join(sorted(known)) or 'none'})")
        secrets = [s for s in secrets if s.name in names]
    return sources.read_all(secrets)


def host_key(ctl, hc, new=False):
    """The host's secret public key (DER): the one recorded on the
    controller; else (or with *new*: a new pair made by the host) the one
    the host says over this checked connection, recorded."""
    if not new:
        der = hostkeys.recorded(ctl.inventory, hc.name)
        if der:
            return der
    with hc.working():
        r = hc.run(hc.receiver("secrets-key", *(["--new"] if new else [])))
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    der = parse_key(hc.name, r.out)
    hostkeys.record(ctl.inventory, hc.name, der)
    return der


def parse_key(host, out):
    for line in out.splitlines():
        if line.startswith("secret-key "):
            try:
                der = base64.b64decode(line.split(" ", 1)[1], validate=True)
                seal.load_public(der)
                return der
            except ValueError:
                break
    raise hostreply.MalformedReply(host, "secrets-key", out.strip().splitlines()[-1:] or "")


def sealed_for(host_name, resolved, der):
    """The sealed secrets of *resolved*; the values are wiped."""
    try:
        return [seal.seal(host_name, s.name, s.version, v.bytes(), der) for s, v in resolved]
    finally:
        sources.wipe(resolved)


def deliver(ctl, hc, resolved):
    """Seal *resolved* to the host's key, send the signed delivery; return
    the host's lines, as printed ("kept NAME VERSION", "placed NAME PATH",
    "activated SYSTEM")."""
    if not resolved:
        return []
    try:
        der = host_key(ctl, hc)
    except BaseException:
        sources.wipe(resolved)
        raise
    data, sig = seal.delivery(hc.name, sealed_for(hc.name, resolved, der), ctl.signing_key,
                              ctl.signer)
    with hc.working():
        r = hc.run(hc.receiver("secrets-deliver"),
                   stdin=bundle.small_tar({"secrets": data, "secrets.sig": sig}))
    if r.status != 0:
        raise HostError(hc.name, "secrets: " + r.last_error_line().removeprefix("refused: "))
    lines = r.out.splitlines()
    for line in lines:
        if line.split(" ", 1)[0] not in ("kept", "placed", "activated"):
            raise hostreply.MalformedReply(hc.name, "secrets-deliver", line)
    return lines


def for_bundle(ctl, host, lifetime):
    """(delivery, signature) of *host*'s secrets for a bundle, sealed to its
    recorded key and valid as long as the bundle's manifests; None when the
    host declares no secrets."""
    secrets = declared(host)
    if not secrets:
        return None
    der = hostkeys.recorded(ctl.inventory, host.name)
    if der is None:
        raise UserError(f"{host.name}: no secret key recorded for this host "
                        f"({hostkeys.path(ctl.inventory)}): run `inv bootstrap --host "
                        f"{host.name}` once while it is reachable")
    resolved = sources.read_all(secrets)
    return seal.delivery(host.name, sealed_for(host.name, resolved, der), ctl.signing_key,
                         ctl.signer, lifetime=lifetime)


def rotate(ctl, host_name, names=None, new_key=False):
    """Read the host's secrets again (or those *names*), seal and deliver
    them: the running system's files change, no generation is made. With
    *new_key* the host first makes a new key pair (every declared secret is
    then delivered to it). Returns the lines to print."""
    from fruixops.remote.receiver import install_receiver_if_missing
    from fruixops.remote.connection import connect
    host = ctl.inventory.host(host_name)
    if new_key and names:
        raise UserError("secrets.rotate-key delivers every secret: give no --name")
    resolved = resolve(host, names)
    if not resolved:
        sources.wipe(resolved)
        raise UserError(f"{host.name} declares no secrets", where=host.where)
    try:
        hc = connect(ctl, host)
    except BaseException:
        sources.wipe(resolved)
        raise
    try:
        out = []
        install_receiver_if_missing(hc)
        if new_key:
            der = host_key(ctl, hc, new=True)
            out.append(f"new secret key {seal.key_id(der)[:16]} recorded in "
                       f"{hostkeys.path(ctl.inventory)}")
        out += deliver(ctl, hc, resolved)
        return [f"{host.name}: {line}" for line in out]
    finally:
        sources.wipe(resolved)
        hc.close()
