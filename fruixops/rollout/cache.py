"""The item cache: content-addressed objects any web server can serve, which
hosts pull from instead of receiving every byte from the controller.

A cache is trusted for nothing. Each object is named by the sha256 a
manifest signs for it, and a host refuses whatever does not hash to its
signed manifest (the controller then pushes that item instead):

    fruixops-cache              "fruixops-cache 1": what this directory is
    objects/SHA.tar             an item's canonical archive
    objects/ZSHA.tar.zst        its zstd form (what hosts with zstd fetch)
    objects/LSHA.listing        its file listing (a big item's tree is held to
                                it instead of being hashed twice)
    deltas/DSHA.tar[.zst]       the files of an item that hosts of one
                                generation lack (uploaded by the deploy that
                                made it; checked file by file on the host)

Objects are immutable: one already there is never written again, and a new
one is written to a temporary name, flushed and renamed, so that a reader
never sees half of one. Only items go there: never keys, manifests or
anything else about a host.

The upload target is a directory on the controller (served by a web server,
or synced to a bucket) or ``ssh://[user@]host[:port]/path`` (SFTP, the host
key checked against the inventory's known_hosts like any host's).
"""

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from fruixops.errors import UserError

MARKER = b"fruixops-cache 1\n"
# The cache's settings (the inventory's fruixops: cache: block) are read with the
# inventory: inventory/settings.py.
from fruixops.inventory.settings import SSH_RE  # noqa: E402


def objects(store, item):
    """{kind: (object name, local file, bytes)} of one built item: "tar" (its
    archive), "zstd" (its zstd form), "listing" (its file listing). The one
    place object names are made."""
    info = store.transfer_info(item.path)
    listing = store.listing_file(item.path)
    return {"tar": (f"objects/{item.sha256}.tar", store.archive(item.path), item.size),
            "zstd": (f"objects/{info['zstd']}.tar.zst", store.compressed(item.path),
                     info["zstd_size"]),
            "listing": (f"objects/{info['listing']}.listing", listing, listing.stat().st_size)}


def pulled_objects(items, store, compress, listing_from):
    """{store path: (object, bytes, listing object or None, its bytes)} of
    what a host pulls for whole *items* (a listing too from *listing_from*
    bytes on)."""
    out = {}
    for it in items:
        objs = objects(store, it)
        name, _, size = objs["zstd" if compress else "tar"]
        lname, _, lsize = objs["listing"] if it.size >= listing_from else (None, None, 0)
        out[str(it.path)] = (name, size, lname, lsize)
    return out


def present(url, names, timeout=5):
    """{name: True, False (the cache answers 404) or None (no answer)} for
    objects at the cache *url*, asked from the controller with HEAD."""
    import http.client
    import urllib.error
    import urllib.request
    out = {}
    for name in names:
        try:
            with urllib.request.urlopen(urllib.request.Request(url + name, method="HEAD"),
                                        timeout=timeout):
                out[name] = True
        except urllib.error.HTTPError as exc:
            out[name] = False if exc.code in (403, 404, 410) else None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
            out[name] = None        # no answer (or no HTTP one): counted as there
    return out


@dataclass
class PushReport:
    items: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    present: int = 0

    def to_json(self):
        return dict(self.__dict__)


def push(store, items, target, progress=None):
    """Upload every object of *items* the cache lacks; return a PushReport."""
    report = PushReport(items=len(items))
    try:
        target.put_bytes("fruixops-cache", MARKER, replace_different=True)
        for item in items:
            for name, local, size in objects(store, item).values():
                if target.has(name):
                    report.present += 1
                    continue
                target.put_file(name, local)
                report.uploaded += 1
                report.uploaded_bytes += size
                if progress:
                    progress(name, size)
    except OSError as exc:
        raise UserError(f"cannot write to the cache {target}: "
                        f"{exc.strerror or exc}") from None
    finally:
        target.finish()
    return report


def verify(target, repair=False):
    """Re-hash every object of the cache against its name: [(name, what is
    wrong)], and how many objects were checked. (Hosts refuse a bad object
    anyway; this finds it before they do.) With *repair*, a bad object is
    deleted, so that the next cache.push uploads it again."""
    bad, checked = [], 0
    try:
        for name in target.names():
            digest, _, kind = name.split("/", 1)[1].partition(".")
            if (kind not in ("tar", "tar.zst", "listing")
                    or not re.fullmatch(r"[0-9a-f]{64}", digest)):
                bad.append((name, "not an object fruixops writes"))
                continue
            h = hashlib.sha256()
            try:
                with target.open(name) as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            except OSError as exc:
                bad.append((name, f"cannot be read: {exc.strerror or exc}"))
                continue
            checked += 1
            if h.hexdigest() != digest:
                bad.append((name, f"its content hashes to {h.hexdigest()}"
                                  + ("; deleted" if repair else "")))
                if repair:
                    target.delete(name)
    except OSError as exc:
        raise UserError(f"cannot read the cache {target}: {exc.strerror or exc}") from None
    finally:
        target.finish()
    return bad, checked


def target_for(settings, known_hosts=None):
    """The upload target of the inventory's cache settings."""
    if not settings.upload:
        raise UserError("the cache has no upload target (fruixops.cache.upload): it can be "
                        "pulled from, not pushed to")
    m = SSH_RE.match(settings.upload)
    if m:
        return SftpTarget(m["host"], int(m["port"] or 22), m["user"] or "root", m["path"],
                          known_hosts, settings.upload_key)
    if settings.upload.startswith("ssh:"):
        raise UserError(f"bad cache upload {settings.upload!r} (ssh://[user@]host[:port]/path)")
    return DirTarget(Path(settings.upload))


class DirTarget:
    """A directory on the controller."""

    def __init__(self, root):
        self.root = root

    def __str__(self):
        return str(self.root)

    def has(self, name):
        return (self.root / name).is_file()

    def names(self):
        """Every object (objects/*, deltas/*), sorted."""
        return sorted(f"{d}/{p.name}" for d in ("objects", "deltas")
                      if (self.root / d).is_dir()
                      for p in (self.root / d).iterdir() if not p.name.startswith("."))

    def open(self, name):
        return open(self.root / name, "rb")

    def delete(self, name):
        (self.root / name).unlink(missing_ok=True)

    def put_file(self, name, local):
        with open(local, "rb") as src:
            self._write(name, lambda out: _copy(src, out))

    def put_bytes(self, name, data, replace_different=False):
        dest = self.root / name
        if dest.is_file() and (not replace_different or dest.read_bytes() == data):
            return
        self._write(name, lambda out: out.write(data))

    def _write(self, name, fill):
        dest = self.root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def finish(self):
        pass


class SftpTarget:
    """A directory on another machine, over SFTP; its host key must be in
    known_hosts (never accepted unseen)."""

    def __init__(self, host, port, user, root, known_hosts, key=None):
        import paramiko
        self.root = root.rstrip("/")
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if known_hosts and Path(known_hosts).exists():
            self.client.load_host_keys(str(known_hosts))
        try:
            self.client.connect(host, port=port, username=user, timeout=15, key_filename=key)
            self.sftp = self.client.open_sftp()
        except paramiko.BadHostKeyException as exc:
            raise UserError(f"cache upload to {host}:{port}: {exc} (its host key must be in "
                            f"{known_hosts or 'known_hosts'})") from None
        except paramiko.SSHException as exc:
            raise UserError(f"cache upload to {host}:{port}: {exc} (an unknown host key is "
                            f"never accepted: it must be in {known_hosts or 'known_hosts'})") \
                from None
        except OSError as exc:
            raise UserError(f"cache upload to {host}:{port}: {exc}") from None
        self._dirs = set()
        self.where = f"{user}@{host}:{port}{self.root}"

    def __str__(self):
        return self.where

    def has(self, name):
        try:
            self.sftp.stat(f"{self.root}/{name}")
            return True
        except IOError:
            return False

    def names(self):
        out = []
        for d in ("objects", "deltas"):
            try:
                out += [f"{d}/{n}" for n in self.sftp.listdir(f"{self.root}/{d}")
                        if not n.startswith(".")]
            except IOError:
                pass
        return sorted(out)

    def open(self, name):
        f = self.sftp.open(f"{self.root}/{name}", "rb")
        f.prefetch()
        return f

    def delete(self, name):
        self.sftp.remove(f"{self.root}/{name}")

    def _mkdirs(self, path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d in self._dirs:
                continue
            try:
                self.sftp.stat(d)
            except IOError:
                self.sftp.mkdir(d)
            self._dirs.add(d)

    def put_file(self, name, local):
        with open(local, "rb") as src:
            self._write(name, lambda out: _copy(src, out))

    def put_bytes(self, name, data, replace_different=False):
        if self.has(name):
            if not replace_different:
                return
            with self.sftp.open(f"{self.root}/{name}", "rb") as f:
                if f.read() == data:
                    return
        self._write(name, lambda out: out.write(data))

    def _write(self, name, fill):
        dest = f"{self.root}/{name}"
        self._mkdirs(dest.rsplit("/", 1)[0])
        tmp = (f"{dest.rsplit('/', 1)[0]}/.{dest.rsplit('/', 1)[1]}.{os.getpid()}."
               f"{threading.get_ident()}.tmp")
        with self.sftp.open(tmp, "wb") as out:
            out.set_pipelined(True)
            fill(out)
        self.sftp.chmod(tmp, 0o444)
        self.sftp.posix_rename(tmp, dest)

    def finish(self):
        self.client.close()


def _copy(src, out, chunk=1 << 20):
    while data := src.read(chunk):
        out.write(data)


class Uploader:
    """Uploads the deltas a deploy makes, each once for all the hosts of a
    run (their threads share it), so that the hosts pull them too."""

    def __init__(self, settings, known_hosts=None):
        self.settings, self.known_hosts = settings, known_hosts
        self._lock = threading.Lock()
        self._target = None
        self._done = {}           # local file -> sha256

    def delta(self, local, compressed):
        """Upload *local* as deltas/SHA.tar[.zst] unless it is there;
        return (its sha256, bytes uploaded by this call)."""
        with self._lock:
            if str(local) in self._done:
                return self._done[str(local)], 0
            h = hashlib.sha256()
            with open(local, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            sha = h.hexdigest()
            name = f"deltas/{sha}.tar" + (".zst" if compressed else "")
            if self._target is None:
                self._target = target_for(self.settings, self.known_hosts)
            uploaded = 0
            if not self._target.has(name):
                self._target.put_file(name, local)
                uploaded = os.path.getsize(local)
            self._done[str(local)] = sha
            return sha, uploaded


def closure_items(ctl, hosts, base_name=None):
    """The items of these hosts' closures (built as needed), each once."""
    items = {}
    for host in hosts:
        for it in ctl.closure(host, ctl.inventory.base_for(host, base_name)):
            items.setdefault(str(it.path), it)
    return list(items.values())
