"""Which SSH host keys a host may present: the address checked before any
connection, unknown keys refused (never added, on every hop), the
inventory's pinned key, and the explicit acceptance of a new key (`inv
hostkey.accept`: the key a host presents, its fingerprint, recorded in
known_hosts)."""

import base64
import hashlib
import ipaddress
import os
import re
import socket
from pathlib import Path

import paramiko
from fabric import Config, Connection

from fruixops.errors import HostError, HostKeyError, HostUnreachable


def check_address(host):
    """The address SSH connects to is a DNS name (labels of 1-63 characters,
    253 in all) or an IP address: anything else (a 240-character name, a
    "user@host" Fabric would split) fails that host with one line."""
    address = host.ssh_host
    try:
        ipaddress.ip_address(address)
        return
    except ValueError:
        pass
    labels = address[:-1].split(".") if address.endswith(".") else address.split(".")
    if len(address) > 253 or not all(_LABEL.match(label) for label in labels):
        shown = address if len(address) <= 40 else address[:40] + "..."
        raise HostError(host.name, f"ssh_host {shown!r} is neither a DNS name (dot-separated "
                                   "labels of 1-63 letters, digits, - or _) nor an IP address")


_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def refuse_unknown(client, known_hosts=None):
    """Make *client* refuse any host key it does not know (Fabric's default
    adds them) and know the user's and the inventory's known_hosts."""
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    user_known = Path("~/.ssh/known_hosts").expanduser()
    if user_known.exists():
        client.load_system_host_keys(str(user_known))
    if known_hosts and Path(known_hosts).exists():
        client.load_host_keys(str(known_hosts))


def pin(client, hostname, port, pinned, name):
    """Add the inventory's pinned host key ("ssh-ed25519 AAAA...")."""
    try:
        key_type, b64 = pinned.split()[:2]
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))
    except (ValueError, paramiko.SSHException, TypeError) as exc:
        raise HostKeyError(name, f"bad ssh_host_key in the inventory: {exc}") from None
    entry = hostname if port in (None, 22) else f"[{hostname}]:{port}"
    client.get_host_keys().add(entry, key_type, key)


def presented_host_key(host, timeout=10):
    """The SSH host key *host* presents, fetched without authenticating
    (for `inv hostkey.accept`). Returns (known_hosts entry name, PKey)."""
    check_address(host)
    conn = Connection(host=host.ssh_host, user=host.var("ssh_user"), port=host.var("ssh_port"),
                      config=Config())
    addr = (conn.host, int(conn.port or 22))
    try:
        sock = socket.create_connection(addr, timeout=timeout)
    except OSError as exc:
        raise HostUnreachable(host.name, f"cannot reach {addr[0]}:{addr[1]}: "
                              f"{exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostUnreachable(host.name, f"SSH handshake failed: {exc}") from None
    finally:
        transport.close()
    entry = addr[0] if addr[1] == 22 else f"[{addr[0]}]:{addr[1]}"
    return entry, key


def fingerprint(key):
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def record_host_key(known_hosts, entry, key):
    """Write *entry*'s key into *known_hosts*, replacing any old key for it."""
    path = Path(known_hosts).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines(True) if path.exists() else []
    kept = [ln for ln in lines if not ln.split() or entry not in ln.split()[0].split(",")]
    kept.append(f"{entry} {key.get_name()} {key.get_base64()}\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
