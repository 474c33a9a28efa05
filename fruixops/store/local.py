"""Store paths and the controller's local store.

A store path is ``/frx/store/<64 lowercase hex>-<name>``; the hash is
input-addressed (see ``build.py``). The local store (default ``.frx/`` in the
project) holds each item as its canonical archive ``<hash>-<name>.tar`` beside
a record ``<hash>-<name>.json`` with the archive's sha256, size and references.
The record is written last, by rename: an item without one is not in the store.
Items are read-only once in.

What a transfer needs is made once per item, at build time (or the first time
it is asked for, in a store built before): the file listing
``<hash>-<name>.sums`` (``archive.listing``), the zstd-compressed archive
``<hash>-<name>.tar.zst`` that is sent to hosts with zstd, and
``<hash>-<name>.transfer`` (JSON) with the sha256 of both (the manifest signs
them). Only records end in ``.json``: ``paths()`` lists the store by them.
"""

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from fruixops.store import archive

STORE_DIR = "/frx/store"
_PATH_RE = re.compile(r"^/frx/store/([0-9a-f]{64})-([A-Za-z0-9][A-Za-z0-9._+-]*)$")


@dataclass(frozen=True, order=True)
class StorePath:
    path: str

    def __post_init__(self):
        if not _PATH_RE.match(self.path):
            raise ValueError(f"not a store path: {self.path!r}")

    @classmethod
    def make(cls, digest, name):
        return cls(f"{STORE_DIR}/{digest}-{name}")

    @property
    def base(self):
        """``<hash>-<name>``, the last path component."""
        return self.path.rsplit("/", 1)[1]

    @property
    def digest(self):
        return _PATH_RE.match(self.path).group(1)

    @property
    def name(self):
        return _PATH_RE.match(self.path).group(2)

    def __str__(self):
        return self.path


@dataclass(frozen=True)
class Item:
    """A built item: its path, the sha256 and size of its canonical archive, and
    the store paths it refers to; in a manifest, also the sha256 of its file
    listing and of its zstd-compressed archive."""
    path: StorePath
    sha256: str
    size: int
    references: tuple
    listing: str = None
    zstd: str = None

    def to_json(self):
        return {"path": str(self.path), "sha256": self.sha256, "size": self.size,
                "references": [str(r) for r in self.references]}

    @classmethod
    def from_json(cls, d):
        return cls(StorePath(d["path"]), d["sha256"], d["size"],
                   tuple(StorePath(r) for r in d["references"]))


class LocalStore:
    def __init__(self, root, zstd_level=None):
        self.root = Path(root)
        self.items_dir = self.root / "store"
        self.tmp_dir = self.root / "tmp"
        self.deltas_dir = self.root / "deltas"
        self._sizes = {}
        self._lock = threading.Lock()
        self._making = {}            # delta file name -> the lock of whoever makes it
        self.zstd_level = zstd_level or ZSTD_LEVEL

    def archive(self, path):
        return self.items_dir / f"{path.base}.tar"

    def _record(self, path):
        return self.items_dir / f"{path.base}.json"

    def listing_file(self, path):
        """The file holding the item's listing (made by transfer_info)."""
        return self.items_dir / f"{path.base}.sums"

    def compressed(self, path):
        """The zstd-compressed archive of the item (made by transfer_info)."""
        return self.items_dir / f"{path.base}.tar.zst"

    def _sizes_file(self, path):
        """Its files' sizes (file_sizes), kept beside its listing."""
        return self.items_dir / f"{path.base}.sizes"

    def _send_record(self, path):
        return self.items_dir / f"{path.base}.transfer"

    def listing(self, path):
        """The item's file listing (bytes)."""
        self.transfer_info(path)
        return self.listing_file(path).read_bytes()

    def transfer_info(self, path):
        """{"listing": sha256, "zstd": sha256, "zstd_size": bytes} of the item,
        making its listing and compressed archive the first time."""
        record = self._send_record(path)
        if self.listing_file(path).exists() and self.compressed(path).exists():
            try:
                return json.loads(record.read_text())
            except FileNotFoundError:
                pass
        sums, sizes = self.listing_file(path), {}
        with open(self.archive(path), "rb") as f:
            data = archive.listing(f, sizes)
        _write_new(sums, lambda out: out.write(data))
        self._keep_sizes(path, sizes)
        zst = self.compressed(path)
        zsha = _write_new(zst, lambda out: _zstd(self.archive(path), out, self.zstd_level))
        info = {"listing": hashlib.sha256(data).hexdigest(), "zstd": zsha,
                "zstd_size": zst.stat().st_size}
        _write_new(record, lambda out: out.write(json.dumps(info, sort_keys=True).encode()))
        return info

    def for_manifest(self, item):
        """*item* with the hashes a manifest signs besides its own filled in."""
        info = self.transfer_info(item.path)
        return replace(item, listing=info["listing"], zstd=info["zstd"])

    def get(self, path):
        """The Item at *path*, or None when it is not (completely) in the store."""
        try:
            return Item.from_json(json.loads(self._record(path).read_text()))
        except FileNotFoundError:
            return None

    def add(self, item, archive_tmp):
        """Move a finished archive into the store and record it."""
        self.items_dir.mkdir(parents=True, exist_ok=True)
        target = self.archive(item.path)
        os.chmod(archive_tmp, 0o444)
        os.replace(archive_tmp, target)
        self.transfer_info(item.path)
        record = json.dumps(item.to_json(), indent=1, sort_keys=True) + "\n"
        _write_new(self._record(item.path), lambda out: out.write(record.encode()))

    def paths(self):
        """Every complete item in the store."""
        if not self.items_dir.exists():
            return []
        return [StorePath(f"/frx/store/{f.name[:-5]}") for f in self.items_dir.glob("*.json")]

    def _files(self, path):
        """Every file of an item, its record first, its deltas last."""
        deltas = sorted(self.deltas_dir.glob(f"{path.base}.*")) if self.deltas_dir.exists() else []
        return (self._record(path), self.archive(path), self.listing_file(path),
                self.compressed(path), self._send_record(path), self._sizes_file(path), *deltas)

    def footprint(self, path):
        """The bytes the item's files take (what delete() would free)."""
        return sum(f.stat().st_size for f in self._files(path) if f.exists())

    def delete(self, path):
        """Remove an item: its record first (then it is no longer in the store),
        then the rest. Returns the bytes freed."""
        freed = 0
        for f in self._files(path):
            try:
                freed += f.stat().st_size
                f.unlink()
            except FileNotFoundError:
                pass
        return freed

    def last_used(self, path):
        try:
            return self._record(path).stat().st_mtime
        except FileNotFoundError:
            return 0

    def closure(self, top):
        """*top* and everything it refers to, transitively, in a stable order
        (references before the items that refer to them)."""
        order, seen = [], set()

        def visit(path):
            if path in seen:
                return
            seen.add(path)
            item = self.get(path)
            if item is None:
                raise KeyError(f"{path} is not in the local store {self.root}")
            for ref in sorted(item.references):
                visit(ref)
            order.append(item)

        visit(top)
        return order

    def new_tmp(self, label):
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{label}.{os.getpid()}.{os.urandom(4).hex()}"


    def file_sizes(self, path):
        """{"./path": size} of the item's regular files (hard links count
        with the file they share): what a delta saves, in bytes. Kept beside
        the listing when that is made (reading a base's 40,000 tar headers
        again took 2 s of every upgrade); an item listed before that has
        them read from its archive once, and kept."""
        if path in self._sizes:
            return self._sizes[path]
        try:
            sizes = json.loads(self._sizes_file(path).read_text())
        except (FileNotFoundError, ValueError):
            import tarfile
            sizes = {}
            with tarfile.open(self.archive(path), "r:") as tar:
                for m in tar:
                    name = m.name.rstrip("/")
                    name = name if name.startswith("./") else f"./{name}"
                    if m.isreg():
                        sizes[name] = m.size
                    elif m.islnk():
                        target = m.linkname if m.linkname.startswith("./") else f"./{m.linkname}"
                        sizes[name] = sizes.get(target, 0)
            self._keep_sizes(path, sizes)
        self._sizes[path] = sizes
        return sizes

    def _keep_sizes(self, path, sizes):
        data = json.dumps(sizes, sort_keys=True, separators=(",", ":")).encode()
        try:
            _write_new(self._sizes_file(path), lambda out: out.write(data))
        except OSError:
            pass                # a store it may not write to: read again next time

    def delta(self, path, need, compress):
        """The delta of item *path* for a host that lacks only the file
        contents *need* (a set of (kind, sha256), as the host's `listings`
        answer says): (file, size). Made once per (item, need) and kept: a
        fleet at the same generation gets the same delta. Named after the
        item, so that deleting the item deletes its deltas."""
        key = hashlib.sha256("\n".join(sorted(f"{k} {s}" for k, s in need)).encode()).hexdigest()
        self.deltas_dir.mkdir(parents=True, exist_ok=True)
        raw = self.deltas_dir / f"{path.base}.{key}.tar"
        # The hosts of a fleet run ask for the same delta at once (threads):
        # one makes it, the others wait for it.
        with self._lock:
            making = self._making.setdefault(raw.name, threading.Lock())
        with making:
            return self._delta(path, need, compress, raw)

    def _delta(self, path, need, compress, raw):
        if not raw.exists():
            listing = self.listing(path)
            with open(self.archive(path), "rb") as f:
                _write_new(raw, lambda out: archive.write_delta(f, out, need, listing))
        target = raw
        if compress:
            target = raw.with_name(f"{raw.name}.zst")
            if not target.exists():
                # A big delta (a host that holds little of the item) is made
                # faster, at the cost of some bytes.
                level = self.zstd_level if raw.stat().st_size <= DELTA_STRONG else min(
                    self.zstd_level, 9)
                _write_new(target, lambda out: _zstd(raw, out, level))
        return target, target.stat().st_size


# Items are compressed once, when they are built, and sent to every host that
# lacks them: level 19 with long-distance matching (a 128 MiB window, which
# zstd -d accepts by default) makes real OS binaries about 1.4x smaller than
# zstd's default level 3, and the host's zstd -d is as fast. `zstd_level` in
# the inventory's fruixops block changes it (builds are faster at lower levels).
ZSTD_LEVEL = 19
DELTA_STRONG = 64 << 20


def _zstd(src, out, level=ZSTD_LEVEL):
    import zstandard
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=-1, **({"enable_ldm": True, "window_log": 27} if level >= 10 else {}))
    with open(src, "rb") as f:
        # Its size, given, lets a small item's frame ask for a small window.
        zstandard.ZstdCompressor(compression_params=params).copy_stream(
            f, out, size=os.fstat(f.fileno()).st_size)


def _write_new(target, fill):
    """Write *target* by *fill(file)* into a temporary name, then rename it:
    read-only, whole or absent. Returns the sha256 of what was written."""
    # (Per process and thread: the hosts of a fleet run are threads.)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "wb") as f:
        out = archive.HashingWriter(f)
        fill(out)
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    return out.sha.hexdigest()
