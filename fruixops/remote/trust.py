"""Trust changes after first contact: a host adds or removes a trusted key
only on a statement signed by a key it already trusts (as TUF rotates its
root keys), so SSH access alone can never change whom a host trusts.

    fruixops-trust 1
    host web1
    serial 1764175000123        the signer's clock in ms, shared with manifests
    expires 1764175600
    signer ops-2026
    add new-key <sha256 of its PEM>      (or: remove old-key, or
                                          receiver <sha256 of a new receiver>)
    end

The signature is Ed25519 over those bytes, as for a manifest.
"""

import hashlib
import time

from fruixops.remote import bundle

LIFETIME = 600      # seconds


def statement(host, action, name, signer, pem=None, now=None):
    now = int(now if now is not None else time.time())
    if action == "add":
        what = f"add {name} {hashlib.sha256(pem).hexdigest()}"
    elif action == "receiver":     # pem: the new receiver program
        what = f"receiver {hashlib.sha256(pem).hexdigest()}"
    else:
        what = f"remove {name}"
    lines = ["fruixops-trust 1", f"host {host}", f"serial {time.time_ns() // 1_000_000}",
             f"expires {now + LIFETIME}", f"signer {signer}", what, "end"]
    return ("\n".join(lines) + "\n").encode()


def change(host, action, name, signing_key, signer, pem=None):
    """The tar bundle the receiver's trust-add / trust-remove read: the
    statement, its signature and, to add a key, the key."""
    st = statement(host, action, name, signer, pem)
    files = {"statement": st, "statement.sig": signing_key.sign(st)}
    if pem is not None:
        files["receiver" if action == "receiver" else "key.pem"] = pem
    return bundle.small_tar(files)
