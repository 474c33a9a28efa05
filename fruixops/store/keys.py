"""Ed25519 signing keys: ``keys/NAME.key`` (private, PEM PKCS#8, mode 0600,
git-ignored) and ``keys/NAME.pub`` (PEM SubjectPublicKeyInfo, committed).

A private key is never printed; errors name the file, not its contents.
"""

import getpass
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from fruixops.errors import UserError

PASSPHRASE_ENV = "FRUIXOPS_KEY_PASSPHRASE"


def generate(directory, name, passphrase=None, overwrite=False):
    """Write DIR/NAME.key and DIR/NAME.pub; return (key path, pub path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if key_path.exists() and not overwrite:
        raise UserError(f"{key_path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
           else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, key_path)
    pub_path.write_bytes(public_pem(key.public_key()))
    return key_path, pub_path


def public_pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def key_name(path):
    """A key's name: its file name without .key / .pub."""
    return Path(path).stem


def load_private(path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("signing key not found (inv keys.generate --name NAME)",
                        where=str(path)) from None
    mode = path.stat().st_mode & 0o077
    if mode:
        raise UserError(f"signing key is readable by others (mode {oct(path.stat().st_mode & 0o777)}); "
                        "chmod 600 it", where=str(path))
    passphrase = None
    if b"ENCRYPTED" in data:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase is None and sys.stdin.isatty():
            passphrase = getpass.getpass(f"passphrase for {path}: ")
        if passphrase is None:
            raise UserError(f"signing key is encrypted; set {PASSPHRASE_ENV}", where=str(path))
    try:
        key = serialization.load_pem_private_key(
            data, passphrase.encode() if passphrase else None)
    except (ValueError, TypeError):
        raise UserError("cannot load signing key (wrong passphrase or not a PEM key)",
                        where=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError("signing key is not Ed25519", where=str(path))
    return key


def load_public(path):
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise UserError("public key not found", where=str(path)) from None
    except ValueError:
        raise UserError("not a PEM public key", where=str(path)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError("public key is not Ed25519", where=str(path))
    return key


def public_path_for(private_path):
    return Path(private_path).with_suffix(".pub")


def ensure(private_path):
    """Create a missing key pair (the lab's key, on first use)."""
    private_path = Path(private_path)
    if not private_path.exists():
        generate(private_path.parent, key_name(private_path))


def verify(public_key, data, signature):
    try:
        public_key.verify(signature, data)
        return True
    except InvalidSignature:
        return False
