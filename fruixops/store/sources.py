"""Pinned build inputs: check a base's source against its declaration and lay
it out as a staging tree to build items from.

A ``dist`` source is FreeBSD's ``base.txz`` and ``kernel.txz``, each checked
against its declared sha256 (a wrong hash is an error). A ``tree`` source is a
staging directory (``make installworld installkernel DESTDIR=...``) whose
content hash is computed, and checked when the declaration pins one. Hashes of
unchanged files come from a small stat-keyed cache, so a rebuild that hits the
store cache does not re-read gigabytes.
"""

import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

from fruixops.store import distgen
from fruixops.errors import UserError

CHUNK = 1 << 20


class HashCache:
    """sha256 of files keyed by (path, size, mtime_ns, inode, ctime_ns)."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def sha256(self, file, st=None):
        """*st*: the file's stat when the caller has it (a tree walk)."""
        file = os.path.abspath(file)
        st = st or os.stat(file)
        key = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        hit = self.entries.get(file)
        if hit and hit[:4] == key:
            return hit[4]
        digest = sha256_file(file)
        self.entries[file] = key + [digest]
        self.dirty = True
        return digest

    def save(self):
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.entries))
            tmp.replace(self.path)
            self.dirty = False


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch(file_source, cache_dir):
    """Local path of a dist set: its own path, or a URL downloaded once."""
    loc = file_source.location
    if "://" not in loc:
        return Path(loc)
    target = Path(cache_dir) / file_source.sha256
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        try:
            with urllib.request.urlopen(loc) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, CHUNK)
        except OSError as exc:
            raise UserError(f"cannot download {loc}: {exc}", where=file_source.where) from None
        tmp.replace(target)
    return target


def source_hash(base, hash_cache, cache_dir):
    """The content hash of *base*'s source, verified against its pins."""
    src = base.source
    if src.kind == "dist":
        _ensure_synthetic(base)
        digests = []
        for fs in (src.base_txz, src.kernel_txz):
            path = fetch(fs, cache_dir)
            if not path.exists():
                hint = " (the lab makes it: inv lab.sources)" if src.synthetic else ""
                raise UserError(f"base {base.name}: missing source {path}{hint}", where=fs.where)
            actual = hash_cache.sha256(path)
            if actual != fs.sha256:
                raise UserError(f"base {base.name}: wrong sha256 for {path}: "
                                f"declared {fs.sha256}, actual {actual}", where=fs.where)
            digests.append(actual)
        return hashlib.sha256(" ".join(digests).encode()).hexdigest()
    tree = Path(src.tree)
    if not tree.is_dir():
        raise UserError(f"base {base.name}: missing source tree {tree}", where=src.where)
    actual = tree_hash(tree, hash_cache)
    if src.tree_sha256 and actual != src.tree_sha256:
        raise UserError(f"base {base.name}: wrong sha256 for tree {tree}: "
                        f"declared {src.tree_sha256}, actual {actual}", where=src.where)
    return actual


def _ensure_synthetic(base):
    """The lab's dist sets are made on first use; their hashes are still checked."""
    src = base.source
    if not src.synthetic:
        return
    paths = [Path(src.base_txz.location), Path(src.kernel_txz.location)]
    if all(p.exists() for p in paths) or any("://" in str(p) for p in paths):
        return
    if paths[0].parent != paths[1].parent:
        return
    made = distgen.generate(paths[0].parent, seed=src.synthetic["seed"],
                            size_mb=src.synthetic["size_mb"])
    for want, (which, got) in zip(paths, sorted(made.items())):
        if got.name != want.name:
            got.rename(want)


def tree_hash(root, hash_cache):
    """Hash of a staging tree: every entry's path, type, exec bit and content.
    One directory's entries in name order, then its subdirectories' (the
    order of os.walk), with one lstat per entry: a tree of real files has
    tens of thousands, and this runs on every deploy."""
    h = hashlib.sha256()
    pending = [(os.path.abspath(root), "")]
    while pending:
        dir_path, rel_dir = pending.pop()
        with os.scandir(dir_path) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_symlink():
                h.update(f"l {rel} {os.readlink(e.path)}\n".encode())
            elif e.is_dir(follow_symlinks=False):
                h.update(f"d {rel}\n".encode())
                subdirs.append((e.path, rel))
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                x = "x" if st.st_mode & 0o111 else "-"
                h.update(f"f {rel} {x} {hash_cache.sha256(e.path, st)}\n".encode())
        pending.extend(reversed(subdirs))
    return h.hexdigest()


def stage(base, scratch, cache_dir):
    """A staging tree for *base* (its own tree, or the dist sets unpacked into
    *scratch*). Unpacking refuses absolute names, '..' and device nodes."""
    src = base.source
    if src.kind == "tree":
        return Path(src.tree)
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    for fs in (src.base_txz, src.kernel_txz):
        path = fetch(fs, cache_dir)
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(scratch, filter=_dist_filter)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"base {base.name}: cannot unpack {path}: {exc}",
                            where=fs.where) from None
    return scratch


def _dist_filter(member, dest):
    member = tarfile.data_filter(member, dest)
    # Store items never carry setuid/setgid bits; owner write is ours to drop later.
    return member.replace(mode=(member.mode or 0) & 0o755 | 0o200, deep=False)
