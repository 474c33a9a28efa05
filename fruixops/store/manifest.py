"""Manifests: the signed statement "host H may boot closure C, made of these
items with these content hashes".

Line-oriented so that POSIX sh and awk read it on a host::

    fruixops-manifest 3
    host web1
    serial 1764175000123
    issued 1764175000
    expires 1764178600
    system /frx/store/<hash>-fruix-system-web1
    base stable-canary
    version-label 15.0-STABLE-p1
    signer lab
    check <name> <base64 of a POSIX sh command> <base64 of what counts as healthy>
    ...
    item /frx/store/<hash>-<name> <sha256> <size> <ref,ref,...|-> <listing> <zstd>
    ...
    end

An item's sha256 is its canonical archive's; <listing> is the sha256 of its
file listing (``archive.listing``: in format 3, each file's mode is in it
too), which the host keeps for ``verify`` and to find files it already holds;
<zstd> that of the compressed archive the controller sends to a host with
zstd (the host hashes what it receives, in whichever form).

A ``check`` line is a health check the host may run for this generation
(the receiver's ``check N NAME``): only checks signed here ever run, so the
controller cannot make a host run a command no trusted key signed. What
counts as healthy (JSON: expect_exit, expect_output, retries, delay,
timeout) is signed along, so that a rollback to this generation later
checks it the same way.

The signature is Ed25519 over the exact bytes, raw 64 bytes, and verifies with
``openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest -sigfile sig``.
"""

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import dataclass

from fruixops.store.local import Item, StorePath

# A health check, as a manifest signs it for its host (run by
# fruixops.rollout.checks): a name, a POSIX sh command, what counts as healthy.
@dataclass(frozen=True)
class Check:
    name: str
    command: str
    expect_exit: int = 0
    expect_output: str | None = None      # a regular expression (re.search)
    retries: int = 0
    delay: float = 1.0
    timeout: float = 30.0


_WORD = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def wire_name(name):
    """The one word a check is signed and asked for by ("sshd running" ->
    "sshd_running-<8 hex>": a playbook's names may hold any character)."""
    if _WORD.match(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40] or "check"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


FORMAT = "fruixops-manifest 3"
# Formats 1 (no listing hashes) and 2 (listings without modes) are still read:
# hosts keep the manifests of generations deployed before, and `plan`
# compares against them.
_FORMATS = {"fruixops-manifest 1": 1, "fruixops-manifest 2": 2, FORMAT: 3}
DEFAULT_LIFETIME = 3600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_NUM = re.compile(r"^[0-9]{1,19}$")
CHECK_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class Manifest:
    host: str
    serial: int
    issued: int
    expires: int
    system: StorePath
    base: str
    version_label: str
    signer: str
    items: tuple        # of Item, references before referrers
    checks: tuple = ()  # of Check

    def render(self):
        lines = [FORMAT, f"host {self.host}", f"serial {self.serial}",
                 f"issued {self.issued}", f"expires {self.expires}",
                 f"system {self.system}", f"base {self.base}",
                 f"version-label {self.version_label}", f"signer {self.signer}"]
        for c in self.checks:
            lines.append(f"check {wire_name(c.name)} {_b64(c.command)} "
                         f"{_b64(json.dumps(_judgement(c)))}")
        for it in self.items:
            refs = ",".join(str(r) for r in it.references) or "-"
            lines.append(f"item {it.path} {it.sha256} {it.size} {refs} {it.listing} {it.zstd}")
        lines.append("end")
        return ("\n".join(lines) + "\n").encode()


def new(host, closure, base, signer, serial=None, lifetime=DEFAULT_LIFETIME, now=None,
        checks=()):
    """A manifest for *host* to boot *closure* (a list of Items with their
    listing and zstd hashes, see LocalStore.for_manifest; top last), with
    the health *checks* (Check objects) the host may run for it."""
    signed = {}
    for c in checks:
        if wire_name(c.name) == "booted":
            raise ValueError(f"bad check name {c.name!r}")
        if signed.setdefault(wire_name(c.name), c) != c:
            raise ValueError(f"two different checks named {c.name!r}")
    if any(it.listing is None or it.zstd is None for it in closure):
        raise ValueError("every item of a manifest needs its listing and zstd hashes")
    now = int(now if now is not None else time.time())
    serial = serial if serial is not None else time.time_ns() // 1_000_000
    return Manifest(host=host, serial=serial, issued=now, expires=now + lifetime,
                    system=closure[-1].path, base=base.name,
                    version_label=base.version_label, signer=signer, items=tuple(closure),
                    checks=tuple(signed.values()))


def sign(manifest_bytes, private_key):
    return private_key.sign(manifest_bytes)


def parse(data):
    """Parse manifest bytes strictly; raise ManifestError on anything off."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ManifestError("manifest is not ASCII") from None
    if not text.endswith("\n"):
        raise ManifestError("manifest does not end with a newline")
    lines = text[:-1].split("\n")
    if not lines or lines[0] not in _FORMATS:
        raise ManifestError(f"first line is not {FORMAT!r}")
    version = _FORMATS[lines[0]]
    if lines[-1] != "end":
        raise ManifestError("last line is not 'end'")
    fields, items, checks = {}, [], {}
    order = ["host", "serial", "issued", "expires", "system", "base", "version-label", "signer"]
    for n, line in enumerate(lines[1:-1], start=2):
        parts = line.split(" ")
        if parts[0] == "item":
            items.append(_item(parts, n, version))
            continue
        if parts[0] == "check":
            c = _check(parts, n)
            if c.name in checks:
                raise ManifestError(f"line {n}: check {c.name} given twice")
            checks[c.name] = c
            continue
        if len(parts) != 2 or parts[0] not in order:
            raise ManifestError(f"line {n}: unexpected {line[:60]!r}")
        if parts[0] in fields:
            raise ManifestError(f"line {n}: {parts[0]} given twice")
        if items:
            raise ManifestError(f"line {n}: {parts[0]} after the items")
        fields[parts[0]] = parts[1]
    missing = [k for k in order if k not in fields]
    if missing:
        raise ManifestError(f"missing {', '.join(missing)}")
    for key in ("serial", "issued", "expires"):
        if not _NUM.match(fields[key]):
            raise ManifestError(f"{key} is not a number")
    for key in ("host", "base", "version-label", "signer"):
        if not _NAME.match(fields[key]):
            raise ManifestError(f"bad {key} {fields[key]!r}")
    try:
        system = StorePath(fields["system"])
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    paths = [it.path for it in items]
    if len(set(paths)) != len(paths):
        raise ManifestError("an item is listed twice")
    if system not in paths:
        raise ManifestError("the system item is not among the items")
    known = set(paths)
    for it in items:
        for ref in it.references:
            if ref not in known:
                raise ManifestError(f"{it.path} refers to {ref}, which is not in the manifest")
    return Manifest(host=fields["host"], serial=int(fields["serial"]),
                    issued=int(fields["issued"]), expires=int(fields["expires"]),
                    system=system, base=fields["base"], version_label=fields["version-label"],
                    signer=fields["signer"], items=tuple(items), checks=tuple(checks.values()))


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _judgement(c):
    return {"name": c.name, "expect_exit": c.expect_exit, "expect_output": c.expect_output,
            "retries": c.retries, "delay": c.delay, "timeout": c.timeout}


def _check(parts, n):
    if len(parts) != 4 or not CHECK_NAME.match(parts[1]):
        raise ManifestError(f"line {n}: check needs a name, its command and its judgement")
    try:
        command = base64.b64decode(parts[2], validate=True).decode()
        judged = json.loads(base64.b64decode(parts[3], validate=True))
        if wire_name(judged["name"]) != parts[1]:
            raise ValueError("name")
        return Check(judged["name"], command, int(judged["expect_exit"]), judged["expect_output"],
                     int(judged["retries"]), float(judged["delay"]), float(judged["timeout"]))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ManifestError(f"line {n}: check {parts[1]}: bad encoding") from None


def _item(parts, n, version):
    if version == 1 and len(parts) == 5:
        parts = parts + [None, None]
    if len(parts) != 7:
        raise ManifestError(f"line {n}: item needs path, sha256, size, references, listing, zstd")
    _, path, sha, size, refs, listing, zstd = parts
    if not _HEX.match(sha) or not _NUM.match(size) or not all(
            h is None or _HEX.match(h) for h in (listing, zstd)):
        raise ManifestError(f"line {n}: bad sha256, size, listing or zstd")
    try:
        references = () if refs == "-" else tuple(StorePath(r) for r in refs.split(","))
        return Item(StorePath(path), sha, int(size), references, listing, zstd)
    except ValueError as exc:
        raise ManifestError(f"line {n}: {exc}") from None
