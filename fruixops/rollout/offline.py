"""Offline bundles: what a deploy sends, as one file, for hosts the
controller cannot reach (air-gapped, or behind a one-way link).

A bundle is an uncompressed tar:

    fruixops-bundle             "fruixops-bundle 1", then "host NAME" lines
    hosts/NAME/manifest         each host's signed manifest...
    hosts/NAME/manifest.sig     ...and its signature
    hosts/NAME/secrets(.sig)    its secrets, sealed to its own key, signed
    objects/ZSHA.tar.zst        each item once, named as in a cache (or
    objects/SHA.tar             objects/SHA.tar, for hosts without zstd)
    objects/LSHA.listing        the listings of items of 1 MiB and more

On the host, `sh /var/lib/fruix/fruixops/receiver import FILE` verifies it
exactly like a deploy (trusted key, host name, expiry, serial, hashes,
audit) and makes the new generation the loader's default. The manifests are
signed at export: their lifetime (--valid) is how long the bundle may wait
before it is imported; a deploy or another bundle imported in between makes
it a replay.
"""

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from fruixops.rollout import cache, push
from fruixops.errors import UserError

MARKER = "fruixops-bundle 1"
LISTING_FROM = push.SEND_LISTING_FROM
_DURATION = re.compile(r"^([0-9]+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text):
    """Seconds in "3600", "90m", "12h", "7d" or "2w"."""
    m = _DURATION.match(str(text).strip())
    if not m or int(m[1]) == 0:
        raise UserError(f"bad duration {text!r} (a number with s, m, h, d or w, e.g. 7d)")
    seconds = int(m[1]) * _UNITS[m[2]]
    if seconds > 366 * 86400:
        raise UserError(f"--valid {text}: at most a year (366d)")
    return seconds


@dataclass
class Exported:
    path: Path
    hosts: list
    items: int
    bytes: int

    def to_json(self):
        return {"path": str(self.path), "hosts": self.hosts, "items": self.items,
                "bytes": self.bytes}


def export(ctl, hosts, out, base_name=None, lifetime=None, compress=True):
    """Write one bundle for *hosts*; each item once whatever the number of
    hosts. Written to a temporary name beside *out*, then renamed."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: no directory {out.parent}")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory: name the bundle file")
    store = ctl.builder.store
    from fruixops.store import manifest
    from fruixops.system.secrets import deliver as secret_delivery
    signed, items, sealed = [], {}, {}
    for host in hosts:
        m, data, sig = ctl.make_manifest(host.name, base_name, lifetime=lifetime)
        signed.append((host.name, data, sig))
        # The host's secrets, sealed to its own key (never in the clear).
        secrets = secret_delivery.for_bundle(
            ctl, host, lifetime or host.var("manifest_lifetime", manifest.DEFAULT_LIFETIME))
        if secrets:
            sealed[host.name] = secrets
        for it in m.items:
            items.setdefault(it.sha256, it)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _write(tmp, out, signed, items, store, compress, sealed)
    except OSError as exc:
        raise UserError(f"cannot write the bundle {out}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(out, [h for h, _, _ in signed], len(items), out.stat().st_size)


def _write(tmp, out, signed, items, store, compress, sealed):
    """The bundle into *tmp*, flushed, then renamed to *out*."""
    with open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            marker = MARKER + "\n" + "".join(f"host {h}\n" for h, _, _ in signed)
            _add_bytes(tar, "fruixops-bundle", marker.encode())
            for name, data, sig in signed:
                _add_bytes(tar, f"hosts/{name}/manifest", data)
                _add_bytes(tar, f"hosts/{name}/manifest.sig", sig)
                if name in sealed:
                    _add_bytes(tar, f"hosts/{name}/secrets", sealed[name][0])
                    _add_bytes(tar, f"hosts/{name}/secrets.sig", sealed[name][1])
            for it in items.values():
                objs = cache.objects(store, it)
                for kind in ("zstd" if compress else "tar", "listing"):
                    if kind == "listing" and it.size < LISTING_FROM:
                        continue
                    name, local, _ = objs[kind]
                    tar.add(local, arcname=name, filter=_plain)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)


def _plain(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode, info.mtime = 0o444, 1
    return info


def _add_bytes(tar, name, data):
    info = _plain(tarfile.TarInfo(name))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def import_over_ssh(ctl, host, file, reboot=False):
    """Stream the bundle *file* to *host* and import it there (its receiver
    installed or updated first). Returns the lines to print."""
    from fruixops.rollout import boot
    from fruixops.remote import hostreply
    from fruixops.rollout.bootstrap import install_receiver_if_missing
    from fruixops.rollout.deploy import connect
    from fruixops.errors import HostError
    path = Path(file)
    if not path.is_file():
        raise UserError(f"no bundle file {file!r}")
    size = path.stat().st_size
    hc = connect(ctl, host)
    try:
        install_receiver_if_missing(hc)
        # As long as a command may take, and as long again as unpacking the
        # bundle at the slowest rate a pull is allowed.
        r = hc.run(hc.receiver("import", "-"), stdin=push._chunks(path, size),
                   timeout=hc.command_timeout + size / push.PULL_MIN_RATE)
        if r.status != 0:
            raise HostError(host.name, r.last_error_line())
        fields = hostreply.fields(host.name, "import", r.out, ("landed", "generation"),
                                  ("secrets",))
        lines = [f"{host.name}: imported {path.name} ({size} bytes): generation "
                 f"{fields['generation']}, {fields['landed']} items landed"
                 + (f", {fields['secrets']} secrets kept" if "secrets" in fields else "")]
        if reboot:
            hc = boot.reboot(hc)
            state = boot.state(hc)
            lines.append(f"{host.name}: booted generation {state.booted_generation} "
                         f"({state.booted})")
        return lines
    finally:
        hc.close()
