"""A generator of small synthetic FreeBSD-like distribution sets.

It writes ``base.txz`` and ``kernel.txz`` laid out like FreeBSD's own (kernel
and modules under ``boot/kernel/``, the loader under ``boot/``, ``bin/sh``,
``sbin/init``, ``etc/rc``, libraries...), so the lab, the tests and the
benchmarks build from real archives. Output is a pure function of (seed, size):
the same arguments give the same bytes, so an inventory can pin their sha256.
"""

import io
import lzma
import random
import tarfile
from pathlib import Path

MTIME = 1_700_000_000   # fixed, so archives are reproducible

_WORDS = (b"kernel loader shepherd store closure fruix freebsd stable release "
          b"boot module driver network socket vnode mount device buffer").split()


def _content(rng, size, kind):
    """Bytes that look like a binary (mostly compressible) or text, or are random."""
    if kind == "random":
        return rng.randbytes(size)
    if kind == "text":
        words = [rng.choice(_WORDS) for _ in range(64)]
        line = b" ".join(words) + b"\n"
        return (line * (size // len(line) + 1))[:size]
    # "binary": repeated instruction-like blocks with some entropy mixed in.
    block = rng.randbytes(512) + bytes(1536)
    noise = rng.randbytes(max(1, size // 8))
    body = (block * (size // len(block) + 1))[:size - len(noise)]
    return b"\x7fELF" + body[4:] + noise if size > 8 else rng.randbytes(size)


def _plan(seed, size_mb):
    """The list of (set, path, size, kind, mode) of a synthetic release."""
    rng = random.Random(f"fruixops-distgen:{seed}:{size_mb}")
    total = size_mb * 1024 * 1024
    kernel_bytes = total // 4
    entries = [
        ("kernel", "boot/kernel/kernel", kernel_bytes // 2, "binary", 0o555),
        ("kernel", "boot/kernel/linker.hints", 4096, "binary", 0o444),
    ]
    nmods = max(4, size_mb * 2)
    for i in range(nmods):
        entries.append(("kernel", f"boot/kernel/mod{i:04d}.ko",
                        max(1024, kernel_bytes // 2 // nmods), "binary", 0o555))
    fixed = [
        ("base", "boot/loader", 262144, "binary", 0o555),
        ("base", "boot/loader.efi", 262144, "binary", 0o555),
        ("base", "boot/defaults/loader.conf", 0, "loader.conf", 0o444),
        ("base", "boot/lua/loader.lua", 8192, "text", 0o444),
        ("base", "bin/sh", 163840, "binary", 0o555),
        ("base", "bin/ls", 40960, "binary", 0o555),
        ("base", "sbin/init", 65536, "binary", 0o555),
        ("base", "etc/rc", 0, "rc", 0o444),
        ("base", "lib/libc.so.7", 1048576, "binary", 0o444),
        ("base", "usr/sbin/sshd", 393216, "binary", 0o555),
        ("base", "usr/bin/tar", 131072, "binary", 0o555),
        ("base", "usr/bin/openssl", 655360, "binary", 0o555),
    ]
    entries += fixed
    rest = total - sum(e[2] for e in entries)
    nfiles = max(40, size_mb * 10)
    dirs = ["usr/lib", "usr/bin", "usr/share/man/man1", "usr/share/doc", "usr/libexec", "lib"]
    for i in range(nfiles):
        kind = rng.choices(["binary", "text", "random"], weights=[6, 3, 1])[0]
        size = max(0, int(rest / nfiles * rng.uniform(0.2, 1.8)))
        d = dirs[i % len(dirs)]
        ext = {"binary": ".so", "text": ".txt", "random": ".dat"}[kind]
        entries.append(("base", f"{d}/f{i:05d}{ext}", size, kind,
                        0o555 if kind == "binary" and d.endswith("bin") else 0o444))
    return rng, entries


_SPECIAL = {
    "loader.conf": b'kernel="kernel"\nbootfile="kernel"\nautoboot_delay="2"\n',
    "rc": b"#!/bin/sh\n# synthetic /etc/rc\n. /etc/rc.subr\nexit 0\n",
}


def generate(out_dir, seed="lab", size_mb=4, preset=1):
    """Write out_dir/base.txz and out_dir/kernel.txz; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng, entries = _plan(seed, size_mb)
    paths = {}
    for which in ("base", "kernel"):
        target = out_dir / f"{which}.txz"
        tmp = target.with_name(f".{target.name}.tmp")
        with lzma.open(tmp, "wb", format=lzma.FORMAT_XZ, preset=preset) as xz:
            with tarfile.open(fileobj=xz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _write_set(tar, rng, [e for e in entries if e[0] == which], which)
        tmp.replace(target)
        paths[which] = target
    return paths


def _write_set(tar, rng, entries, which):
    seen_dirs = set()
    for _, path, size, kind, mode in sorted(entries, key=lambda e: e[1]):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen_dirs:
                seen_dirs.add(d)
                tar.addfile(_info(f"./{d}/", tarfile.DIRTYPE, 0o755))
        data = _SPECIAL[kind] if kind in _SPECIAL else _content(rng, size, kind)
        info = _info(f"./{path}", tarfile.REGTYPE, mode)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    if which == "base":
        link = _info("./usr/lib/libc.so", tarfile.SYMTYPE, 0o777)
        link.linkname = "../../lib/libc.so.7"
        tar.addfile(link)


def _info(name, kind, mode):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, MTIME
    info.uid = info.gid = 0
    info.uname, info.gname = "root", "wheel"
    return info


def generate_tree(out_dir, seed="lab", size_mb=4):
    """The same synthetic release as a staging tree (what `make installworld
    installkernel DESTDIR=...` leaves), for large benchmarks without the cost
    of xz. Returns the tree's path."""
    out_dir = Path(out_dir)
    rng, entries = _plan(seed, size_mb)
    for _, path, size, kind, mode in sorted(entries, key=lambda e: (e[0] != "kernel", e[1])):
        target = out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = _SPECIAL[kind] if kind in _SPECIAL else _content(rng, size, kind)
        target.write_bytes(data)
        target.chmod(mode | 0o200)
    link = out_dir / "usr/lib/libc.so"
    if not link.is_symlink():
        link.symlink_to("../../lib/libc.so.7")
    return out_dir
