"""Bundles: the small tar archives the controller hands the receiver on its
stdin (a manifest and its signature for `plan`, public keys for
`trust-init`). Items themselves never go through here: they stream."""

import io
import tarfile


def small_tar(files):
    """A tar of {name: bytes}, fixed mtime and mode, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 1
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
