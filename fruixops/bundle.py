"""Bundles: the tar streams the controller sends to the receiver's stdin.

Written by hand as headers + data + padding so that item archives stream from
the local store in chunks, never read whole into memory.
"""

import tarfile

BLOCK = 512
CHUNK = 1 << 20


def _header(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, 1
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _pad(size):
    return b"\0" * (-size % BLOCK)


def member(name, data):
    """One small in-memory file."""
    yield _header(name, len(data)) + data + _pad(len(data))


def file_member(name, path, size):
    """One file streamed from disk; its size must be *size*."""
    yield _header(name, size)
    sent = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sent += len(chunk)
            yield chunk
    if sent != size:
        raise IOError(f"{path} changed size while being sent ({sent} != {size})")
    yield _pad(size)


def end():
    yield b"\0" * (2 * BLOCK)


def stream(members):
    """Concatenate member generators and the end-of-archive marker."""
    for m in members:
        yield from m
    yield from end()


def stream_size(small, files):
    """The exact length of the bundle stream of *small* in-memory members
    ((name, bytes)) and *files* ((name, size)), without reading the files."""
    total = 0
    for name, data in small:
        total += len(_header(name, len(data))) + len(data) + len(_pad(len(data)))
    for name, size in files:
        total += len(_header(name, size)) + size + len(_pad(size))
    return total + 2 * BLOCK
