"""Sealing a secret to one host's X25519 key, and the signed delivery that
carries sealed secrets to it. The host opens them with OpenSSL 3 alone
(host/secrets.sh); docs/secrets.md says why the scheme is this one.

    fruixops-secret 1
    host web1
    name db_password
    version 1
    key <sha256 of the host's public key, DER>
    epk <an ephemeral X25519 public key, DER, base64>
    ct <AES-256-CTR ciphertext, base64>
    mac <HMAC-SHA256 of the 7 lines above, hex>

Z = X25519(ephemeral, host); k = SHA256(1 || Z || lines 1-6) || SHA256(2 ||
Z || lines 1-6) (NIST SP 800-56C's one-step KDF); AES key and CTR IV =
PBKDF2-HMAC-SHA256(hex(k[:32]), no salt, 1 iteration) (what `openssl enc
-pbkdf2 -iter 1 -nosalt -pass file:F` derives from a passphrase file);
mac key = k[32:]. Every secret has its own ephemeral key, so its keys are
used once.

A delivery is "fruixops-secrets 1", host, serial, expires, signer, "end",
then the sealed secrets; Ed25519-signed by the fleet's signing key, as
manifests are: anyone can encrypt to a host's public key, only the fleet
can make the host keep what it encrypted.
"""

import base64
import hashlib
import hmac
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

FORMAT = "fruixops-secret 1"
DELIVERY = "fruixops-secrets 1"
LIFETIME = 600          # seconds an online delivery may take to arrive


def public_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(der):
    key = serialization.load_der_public_key(der)
    if not isinstance(key, X25519PublicKey):
        raise ValueError("not an X25519 public key")
    return key


def key_id(der):
    """A host secret key's id: the sha256 of its DER public key."""
    return hashlib.sha256(der).hexdigest()


def _keys(z, fixed):
    k = ConcatKDFHash(algorithm=hashes.SHA256(), length=64, otherinfo=fixed).derive(z)
    material = hashlib.pbkdf2_hmac("sha256", k[:32].hex().encode(), b"", 1, 48)
    return material[:32], material[32:], k[32:]


def seal(host, name, version, value, host_der):
    """The sealed secret (bytes) of *value* for *host*'s key *host_der*."""
    eph = X25519PrivateKey.generate()
    z = eph.exchange(load_public(host_der))
    head = (f"{FORMAT}\nhost {host}\nname {name}\nversion {version}\n"
            f"key {key_id(host_der)}\n"
            f"epk {base64.b64encode(public_der(eph.public_key())).decode()}\n").encode()
    aes_key, iv, mac_key = _keys(z, head)
    enc = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
    body = head + b"ct " + base64.b64encode(enc.update(value) + enc.finalize()) + b"\n"
    mac = hmac.new(mac_key, body, hashlib.sha256).hexdigest()
    return body + f"mac {mac}\n".encode()


def open_sealed(sealed, host_private):
    """The value of a sealed secret (for tests: the host opens them in sh)."""
    lines = sealed.split(b"\n")
    head, body = b"\n".join(lines[:6]) + b"\n", b"\n".join(lines[:7]) + b"\n"
    eph = load_public(base64.b64decode(lines[5].split(b" ", 1)[1]))
    aes_key, iv, mac_key = _keys(host_private.exchange(eph), head)
    if not hmac.compare_digest(hmac.new(mac_key, body, hashlib.sha256).hexdigest().encode(),
                               lines[7].split(b" ", 1)[1]):
        raise ValueError("MAC does not verify")
    dec = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor()
    return dec.update(base64.b64decode(lines[6].split(b" ", 1)[1])) + dec.finalize()


_serial_lock = threading.Lock()
_last_serial = 0


def serial():
    """The signer's clock in ms, strictly increasing within this process (two
    deliveries to one host in the same millisecond are not a replay)."""
    global _last_serial
    with _serial_lock:
        _last_serial = max(time.time_ns() // 1_000_000, _last_serial + 1)
        return _last_serial


def delivery(host, sealed, signing_key, signer, lifetime=LIFETIME, now=None):
    """(delivery bytes, signature): *sealed* secrets for *host*."""
    now = int(now if now is not None else time.time())
    head = (f"{DELIVERY}\nhost {host}\nserial {serial()}\nexpires {now + int(lifetime)}\n"
            f"signer {signer}\nend\n").encode()
    data = head + b"".join(sealed)
    return data, signing_key.sign(data)
