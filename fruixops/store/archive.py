"""Canonical item archives: the exact bytes that are hashed, stored and sent.

An item travels as a tar stream with sorted entries, fixed mtime, owner
root:wheel (uid/gid 0) and normalised modes (0444/0555 for files, 0555 for
directories, no setuid/setgid). The same tree always gives the same bytes.
"""

import hashlib
import io
import os
import stat
import tarfile

MTIME = 1          # like Guix and Nix: one second past the epoch
CHUNK = 1 << 20


class HashingWriter:
    """A write-only file object that hashes and counts what passes through."""

    def __init__(self, fileobj):
        self.fileobj, self.sha, self.size = fileobj, hashlib.sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.fileobj.write(data)

    def flush(self):
        self.fileobj.flush()


def entries(root, select=None):
    """Sorted relative paths below *root* (directories included), filtered by
    *select(relpath)*; parents of selected entries are always included."""
    chosen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if select is None or select(rel):
                chosen.add(rel)
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    chosen.add("/".join(parts[:i]))
    return sorted(chosen)


def _norm(info, mode):
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname, info.gname = "root", "wheel"
    if info.isdir():
        info.mode = 0o555
    elif info.issym():
        info.mode = 0o777
    else:
        info.mode = 0o555 if mode & 0o111 else 0o444
    return info


def write_tree(out, root, select=None, extra=()):
    """Write the canonical tar of *root* (restricted by *select*) to *out*.

    *extra* is a list of (relpath, kind, payload) generated entries merged in
    sorted order: kind "file" (payload bytes, executable flag via tuple),
    "dir", or "symlink" (payload target). Returns (sha256 hex, size).
    """
    hw = HashingWriter(out)
    generated = {rel: (kind, payload) for rel, kind, payload in extra}
    for rel, _kind, _ in extra:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            generated.setdefault("/".join(parts[:i]), ("dir", None))
    paths = sorted(set(entries(root, select) if root else []) | set(generated))
    for rel in paths:
        _check_name(rel)
    seen_inodes = {}
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT,
                      bufsize=CHUNK) as tar:
        for rel in paths:
            name = f"./{rel}"
            if rel in generated:
                _add_generated(tar, name, *generated[rel])
                continue
            full = os.path.join(root, rel)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    info = _norm(tarfile.TarInfo(name), st.st_mode)
                    info.type, info.linkname = tarfile.LNKTYPE, seen_inodes[key]
                    tar.addfile(info)
                    continue
                seen_inodes[key] = name
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                    or stat.S_ISLNK(st.st_mode)):
                raise ValueError(f"{rel}: only files, directories and symlinks go in a store item")
            info = _norm(tar.gettarinfo(full, arcname=name), st.st_mode)
            if info.issym():
                _check_name(info.linkname, "symlink target")
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return hw.sha.hexdigest(), hw.size


def _check_name(rel, what="name"):
    # A listing has one entry per line, and openssl escapes a name with a
    # newline or backslash: such a name could not be checked on the host.
    if "\n" in rel or "\\" in rel:
        raise ValueError(f"{rel!r}: a {what} with a newline or backslash cannot go in a store item")


def listing(fileobj, sizes=None):
    """The listing of the item in the canonical archive *fileobj*: every
    entry of the unpacked tree, byte-sorted, one per line: "f SHA256 ./path"
    (a 0444 file), "x SHA256 ./path" (0555), "l TARGET ./path", "d - ./path". Byte for byte what the host's receiver
    computes over the unpacked item (`listing` in receiver.sh), which `inv
    verify` compares the store against. *sizes*, a dict, gets the size of
    every regular file ("./path": bytes) from the same pass."""
    lines, file_sha, kind = [b"d - ."], {}, {}
    sizes = {} if sizes is None else sizes
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for m in tar:
            name = m.name.rstrip("/")
            name = name if name.startswith("./") else f"./{name}"
            if m.isreg():
                sha, f = hashlib.sha256(), tar.extractfile(m)
                while chunk := f.read(CHUNK):
                    sha.update(chunk)
                file_sha[name], sizes[name] = sha.hexdigest(), m.size
                kind[name] = "x" if m.mode & 0o100 else "f"
                line = f"{kind[name]} {file_sha[name]} {name}"
            elif m.islnk():
                target = m.linkname if m.linkname.startswith("./") else f"./{m.linkname}"
                line = f"{kind[target]} {file_sha[target]} {name}"
                sizes[name] = sizes[target]
            elif m.issym():
                line = f"l {m.linkname} {name}"
            elif m.isdir():
                line = f"d - {name}"
            else:
                raise ValueError(f"{name}: not a file, directory or symlink")
            lines.append(line.encode("utf-8", "surrogateescape"))
    return b"".join(line + b"\n" for line in sorted(lines))


EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def listed_files(listing_bytes):
    """{"./path": (kind, sha256)} of the files of a listing (see listing)."""
    files = {}
    for line in listing_bytes.split(b"\n"):
        if line[:2] in (b"f ", b"x "):
            kind, sha, name = line.decode("utf-8", "surrogateescape").split(" ", 2)
            files[name] = (kind, sha)
    return files


def write_delta(fileobj, out, need, listing_bytes):
    """Write to *out* the delta of the canonical archive *fileobj* (whose
    listing is *listing_bytes*) for a host that lacks only the file contents
    *need* ((kind, sha256) pairs): every directory and symlink, each needed
    content once (at its first path), and every empty file. The host links
    the rest from its store (receiver `assemble`) and lists the result
    against the signed listing."""
    files, sent = listed_files(listing_bytes), set()
    with tarfile.open(fileobj=fileobj, mode="r|") as src, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as dst:
        for m in src:
            if m.isdir() or m.issym():
                dst.addfile(m)
            elif m.isreg():
                name = m.name.rstrip("/")
                key = files[name if name.startswith("./") else f"./{name}"]
                if key[1] == EMPTY_SHA or (key in need and key not in sent):
                    sent.add(key)
                    dst.addfile(m, src.extractfile(m))
            # Hard links (LNKTYPE) the host makes itself, from content it has.


def _add_generated(tar, name, kind, payload):
    info = tarfile.TarInfo(name)
    if kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(_norm(info, 0o555))
    elif kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, payload
        tar.addfile(_norm(info, 0o777))
    else:
        data, executable = payload
        info.size = len(data)
        tar.addfile(_norm(info, 0o555 if executable else 0o444), io.BytesIO(data))
