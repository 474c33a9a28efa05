"""The hosts' secret public keys, recorded on the controller beside their
SSH host keys: ``secret_keys`` in known_hosts' directory (or the
inventory's), one line per host, ``HOST x25519 BASE64-DER``.

A host's key is recorded when the host first says it (``inv bootstrap``,
or the first delivery), over an SSH connection whose host key was checked;
afterwards only ``inv secrets.rotate-key`` replaces it."""

import base64
import os
import threading
from pathlib import Path

from fruixops.system.secrets.seal import load_public

_lock = threading.Lock()


def path(inventory):
    settings = inventory.settings
    base = settings.known_hosts.parent if settings.known_hosts else Path(inventory.path).parent
    return Path(base) / "secret_keys"


def _read(file):
    keys = {}
    try:
        text = file.read_text()
    except FileNotFoundError:
        return keys
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "x25519":
            try:
                keys[parts[0]] = base64.b64decode(parts[2], validate=True)
            except ValueError:
                continue
    return keys


def recorded(inventory, host_name):
    """The DER public key recorded for *host_name*, or None."""
    return _read(path(inventory)).get(host_name)


def record(inventory, host_name, der):
    """Record (or replace) *host_name*'s key: a temporary file, renamed."""
    load_public(der)
    file = path(inventory)
    with _lock:
        keys = _read(file)
        keys[host_name] = der
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text("".join(f"{h} x25519 {base64.b64encode(k).decode()}\n"
                               for h, k in sorted(keys.items())))
        os.replace(tmp, file)
