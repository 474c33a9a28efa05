"""Two systems' configurations compared, as ``inv plan`` and ``inv diff``
show them (``ansible --check --diff`` for a whole system): a unified diff of
every managed file, rc.conf variables, users and groups added, removed or
changed, and the services a live switch would restart, start or stop.

A system's configuration is read from its item (``config/`` and
``etc/rc.conf``): from the controller's store when it has the item, else
from the host (the receiver's ``config N``, a tar of the same files).
"""

import difflib
import io
import tarfile
from dataclasses import dataclass, field

from fruixops.remote import receiver as receiver_mod
from fruixops.errors import HostError

# A managed file shown whole in a diff up to this size; beyond, its digests.
DIFF_LIMIT = 256 * 1024


@dataclass
class SystemConfig:
    files: dict = field(default_factory=dict)      # path -> (mode, owner, group, sha, validate)
    contents: dict = field(default_factory=dict)   # path -> bytes
    dirs: dict = field(default_factory=dict)       # path -> (mode, owner, group)
    links: dict = field(default_factory=dict)      # path -> target
    accounts: dict = field(default_factory=dict)   # "user alice" -> line fields
    services: dict = field(default_factory=dict)   # name -> restart key
    rc_conf: dict = field(default_factory=dict)    # variable -> value (the system's rc.conf)
    loader_tunables: str = ""
    secrets: dict = field(default_factory=dict)    # name -> "version path owner group mode"


def from_tar(data):
    """A SystemConfig from a tar holding a system's ``config/`` and
    ``etc/rc.conf`` (an item's archive, or the receiver's ``config N``)."""
    c = SystemConfig()
    raw = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar:
            name = m.name.lstrip("./") if m.name.startswith("./") else m.name
            if not m.isfile() or not (name.startswith("config/") or name == "etc/rc.conf"):
                continue
            raw[name] = tar.extractfile(m).read()
    for line in raw.get("config/files", b"").decode().splitlines():
        f = line.split("\t")
        if f[0] == "file" and len(f) == 7:
            c.files[f[1]] = tuple(f[2:])
            c.contents[f[1]] = raw.get(f"config/root{f[1]}", b"")
        elif f[0] == "dir" and len(f) == 5:
            c.dirs[f[1]] = tuple(f[2:])
        elif f[0] == "link" and len(f) == 3:
            c.links[f[1]] = f[2]
    for line in raw.get("config/accounts", b"").decode().splitlines():
        f = line.split("\t")
        c.accounts[" ".join(f[:2]) if f[0] != "member" else " ".join(f)] = tuple(f[2:])
    for line in raw.get("config/services", b"").decode().splitlines():
        name, _, key = line.partition("\t")
        c.services[name] = key
    c.loader_tunables = raw.get("config/loader-tunables", b"").decode()
    for line in raw.get("config/secrets", b"").decode().splitlines():
        f = line.split()
        if len(f) == 6 and not line.startswith("#"):
            c.secrets[f[0]] = " ".join(f[1:])
    c.rc_conf = rc_variables(raw.get("etc/rc.conf", b"").decode())
    return c


def rc_variables(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        out[name] = value.split(" #")[0]
    return out


def from_store(store, path):
    """The configuration of system *path* in the controller's store, or None."""
    if path is None or store.get(path) is None:
        return None
    with open(store.archive(path), "rb") as f:
        return from_tar(f.read())


def from_host(hc, generation):
    """Generation *generation*'s configuration, read from the host (None
    when its receiver is older than this fruixops: it has no ``config``)."""
    if hc.access.restricted:
        r = hc.query(hc.receiver("config", generation))
    else:
        r = hc.query(receiver_mod.if_current(f"config {generation}"))
        if r.stdout.strip() == receiver_mod.OUTDATED.encode():
            return None
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    return from_tar(r.stdout) if r.stdout else SystemConfig()


def drift(hc):
    """The managed files edited by hand on the host since its last
    activation: ["edited PATH", "missing PATH"]; None if the receiver is too
    old to say."""
    if hc.access.restricted:
        r = hc.query(hc.receiver("config-check"))
    else:
        r = hc.query(receiver_mod.if_current("config-check"))
        if r.out.strip() == receiver_mod.OUTDATED:
            return None
    if r.status != 0:
        return None
    return [line for line in r.out.splitlines()
            if line.startswith(("edited /", "missing /"))]


@dataclass
class ConfigChange:
    files: list = field(default_factory=list)       # (path, "added"/"removed"/"changed", diff)
    rc_conf: list = field(default_factory=list)     # (variable, old, new)
    accounts: list = field(default_factory=list)    # ("user alice", old, new)
    restart: list = field(default_factory=list)
    start: list = field(default_factory=list)
    stop: list = field(default_factory=list)
    loader_tunables: bool = False
    secrets: list = field(default_factory=list)     # (name, old, new): versions and paths only
    edited: list = field(default_factory=list)      # "edited PATH" lines from the host
    before_unknown: bool = False   # the current configuration could not be read

    @property
    def empty(self):
        return not (self.files or self.rc_conf or self.accounts or self.restart or self.start
                    or self.stop or self.loader_tunables or self.secrets)

    def to_json(self):
        return {"files": [{"path": p, "change": k, "diff": d} for p, k, d in self.files],
                "rc_conf": [{"variable": n, "old": o, "new": v} for n, o, v in self.rc_conf],
                "accounts": [{"account": a, "old": o, "new": n} for a, o, n in self.accounts],
                "restart": self.restart, "start": self.start, "stop": self.stop,
                "loader_tunables_changed": self.loader_tunables, "edited_on_host": self.edited,
                "secrets": [{"name": n, "old": o, "new": v} for n, o, v in self.secrets],
                "current_unknown": self.before_unknown}


def compare(old, new):
    """The ConfigChange from *old* to *new* (SystemConfig; old may be None:
    everything is added)."""
    old = old or SystemConfig()
    ch = ConfigChange()
    for path in sorted(set(old.files) | set(new.files) | set(old.links) | set(new.links)
                       | set(old.dirs) | set(new.dirs)):
        if path in old.links or path in new.links:
            a, b = old.links.get(path), new.links.get(path)
            if a != b:
                ch.files.append((path, _kind(a, b), f"-> {a or '(none)'}\n+> {b or '(none)'}\n"))
            continue
        if path in old.dirs or path in new.dirs:
            a, b = old.dirs.get(path), new.dirs.get(path)
            if a != b:
                ch.files.append((path, _kind(a, b), f"directory {_meta(a)} -> {_meta(b)}\n"))
            continue
        a, b = old.files.get(path), new.files.get(path)
        if a == b:
            continue
        text = ""
        if (a and b and a[:3] != b[:3]) or not (a and b):
            text += f"mode/owner: {_meta(a)} -> {_meta(b)}\n"
        if not a or not b or a[3] != b[3]:
            text += unified(path, old.contents.get(path) if a else None,
                            new.contents.get(path) if b else None)
        ch.files.append((path, _kind(a, b), text))
    for name in sorted(set(old.rc_conf) | set(new.rc_conf)):
        if old.rc_conf.get(name) != new.rc_conf.get(name):
            ch.rc_conf.append((name, old.rc_conf.get(name), new.rc_conf.get(name)))
    for key in sorted(set(old.accounts) | set(new.accounts)):
        if old.accounts.get(key) != new.accounts.get(key):
            ch.accounts.append((key, _account(old.accounts.get(key)),
                                _account(new.accounts.get(key))))
    for name in sorted(new.services):
        if name not in old.services:
            ch.start.append(name)
        elif old.services[name] != new.services[name]:
            ch.restart.append(name)
    ch.stop = sorted(n for n in old.services if n not in new.services)
    ch.loader_tunables = old.loader_tunables != new.loader_tunables
    for name in sorted(set(old.secrets) | set(new.secrets)):
        if old.secrets.get(name) != new.secrets.get(name):
            ch.secrets.append((name, old.secrets.get(name), new.secrets.get(name)))
    return ch


def _secret(fields):
    if fields is None:
        return "(none)"
    version, path, owner, group, mode = fields.split()
    return f"version {version} at {path} ({mode} {owner}:{group})"


def _kind(a, b):
    return "added" if a is None else "removed" if b is None else "changed"


def _meta(m):
    return f"{m[0]} {m[1]}:{m[2]}" if m else "(none)"


def _account(fields):
    return None if fields is None else " ".join(f or "''" for f in fields)


def unified(path, a, b):
    """A unified diff of two versions of a file (None: absent)."""
    for data in (a, b):
        if data is not None and (len(data) > DIFF_LIMIT or b"\0" in data):
            return "binary or large file: contents differ\n"
    al = (a or b"").decode("utf-8", "replace").splitlines(keepends=True)
    bl = (b or b"").decode("utf-8", "replace").splitlines(keepends=True)
    out = "".join(difflib.unified_diff(al, bl, fromfile=f"{path} (current)" if a is not None
                                       else "/dev/null",
                                       tofile=f"{path} (new)" if b is not None else "/dev/null"))
    return out if out.endswith("\n") or not out else out + "\n\\ No newline at end of file\n"


def format_change(ch):
    """The change as plan and diff print it (lines)."""
    lines = ["  the host's current configuration could not be read (its receiver is older "
             "than this fruixops, and this controller's store lacks its system): everything "
             "is shown as new"] if ch.before_unknown else []
    for path, kind, text in ch.files:
        lines.append(f"  {kind} {path}")
        lines += [f"    {ln}" for ln in text.rstrip("\n").splitlines()]
    for name, a, b in ch.rc_conf:
        lines.append(f"  rc.conf {name}: {a if a is not None else '(unset)'} -> "
                     f"{b if b is not None else '(unset)'}")
    for key, a, b in ch.accounts:
        lines.append(f"  {key}: {a or '(none)'} -> {b or '(none)'}")
    if ch.loader_tunables:
        lines.append("  loader tunables changed (they apply at the next boot)")
    for name, a, b in ch.secrets:
        lines.append(f"  secret {name}: {_secret(a)} -> {_secret(b)} (its value is never shown)")
    for what, names in (("restart", ch.restart), ("start", ch.start), ("stop", ch.stop)):
        if names:
            lines.append(f"  services to {what}: {', '.join(names)}")
    for line in ch.edited:
        lines.append(f"  {line} on the host since its last activation: kept aside, then "
                     "replaced, at the next activation")
    return lines
