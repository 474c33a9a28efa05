"""Crafting what an attacker (or a compromised but trusted signer) would send,
to check what the host itself refuses. Test helper, not product code."""

import hashlib
import io
import os
import tarfile
import time

from fruixops.store import archive, manifest
from fruixops.rollout import push
from fruixops.remote.connection import HostConnection
from fruixops.rollout.switch import deployer_identity
from fruixops.store.local import Item, LocalStore, StorePath


def tar_of(members):
    """A tar archive from (name, kind, payload, mode) tuples; kind is one of
    file, dir, symlink, hardlink, chardev, fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 1
            data = None
            if kind == "file":
                data = payload
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def bootable(members):
    """Archives of a kernel item and a system item holding *members*, which
    the loader could boot (a kernel link, boot/init), for offer()."""
    kernel = tar_of([("./boot", "dir", None, 0o555), ("./boot/kernel", "dir", None, 0o555),
                     ("./boot/kernel/kernel", "file", b"\x7fELF" + bytes(60), 0o555)])
    return {"freebsd-native-kernel-x": kernel,
            "fruix-system-ok": lambda paths: tar_of(
                members + [("./boot", "dir", None, 0o555),
                           ("./boot/init", "file", b"#!/bin/sh\n", 0o555),
                           ("./kernel", "symlink", str(paths["freebsd-native-kernel-x"]), 0o777)])}


def _listing(data):
    try:
        return archive.listing(io.BytesIO(data))
    except (ValueError, KeyError):
        return b""              # an archive no listing describes (refused anyway)


def offer(ctl, host_name, archives, tmp_path, tamper=None, sign_key=None, edit_manifest=None,
          tamper_listing=None, compress=False, sign_edit=None):
    """Send a signed manifest naming *archives* ({name: tar bytes}) to a host,
    as they are or (*compress*) in their zstd form. *tamper* changes the
    bytes sent (in transit) after the manifest is made; *edit_manifest*
    changes manifest bytes after signing (*sign_edit*: before, as a
    compromised signer would); *tamper_listing* changes the listing
    the manifest signs (a listing that is sent, see push.SEND_LISTING_FROM,
    is the true one)."""
    store = LocalStore(tmp_path / f"hostile-store-{time.time_ns()}")
    store.items_dir.mkdir(parents=True)
    items, paths = [], {}
    for name, data in archives.items():
        path = StorePath.make(hashlib.sha256(name.encode() + os.urandom(8)).hexdigest(), name)
        paths[name] = path
        if callable(data):          # an archive that refers to the items before it
            data = data(paths)
        store.archive(path).write_bytes(data)
        try:
            info = store.transfer_info(path)
            zsha = info["zstd"]
        except (ValueError, KeyError):      # no listing describes it (refused anyway)
            zsha = hashlib.sha256(b"").hexdigest()
            store.compressed(path).write_bytes(b"")
        if tamper:
            f = store.compressed(path) if compress else store.archive(path)
            f.chmod(0o644)
            f.write_bytes(tamper(f.read_bytes()))
        listing = tamper_listing(_listing(data)) if tamper_listing else _listing(data)
        items.append(Item(path, hashlib.sha256(data).hexdigest(), len(data), (),
                          hashlib.sha256(listing).hexdigest(), zsha))
    now = int(time.time())
    m = manifest.Manifest(host=host_name, serial=time.time_ns() // 1_000_000, issued=now,
                          expires=now + 600, system=items[-1].path, base="hostile",
                          version_label="x", signer="lab", items=tuple(items))
    data = m.render()
    if sign_edit:
        data = sign_edit(data)
    sig = manifest.sign(data, sign_key or ctl.signing_key)
    if edit_manifest:
        data = edit_manifest(data)
    hc = HostConnection(ctl.inventory.host(host_name), ctl.inventory.settings.known_hosts).open()
    try:
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        return push.push(hc, m, data, sig, state.missing or [str(i.path) for i in items],
                         store, deployer_identity(), compress=compress)
    finally:
        hc.close()
