"""Signed manifests: the OpenSSL CLI verifies them, and any changed byte
breaks the signature; the parser is strict."""

import hashlib
import subprocess

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import inv_cmd
from fruixops.store import manifest
from fruixops.controller import Controller


def openssl_verify(pub, m, sig):
    return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub),
                           "-rawin", "-in", str(m), "-sigfile", str(sig)],
                          capture_output=True).returncode


def test_manifest_verifies_with_openssl_and_breaks_on_any_change(project, tmp_path):
    out = tmp_path / "m"
    inv_cmd(project, "manifest", "--host", "web1", "--base", "stable-canary", "--out", str(out),
            check=True)
    pub = project.parent.parent / "keys" / "lab.pub"
    m, sig = out / "manifest", out / "manifest.sig"
    assert len(sig.read_bytes()) == 64
    assert openssl_verify(pub, m, sig) == 0
    text = m.read_bytes()
    assert text.startswith(b"fruixops-manifest 3\nhost web1\n")
    assert b"version-label 15.0-STABLE-p1\n" in text
    for i in (0, len(text) // 3, len(text) // 2, len(text) - 2):
        changed = bytearray(text)
        changed[i] ^= 0x20
        bad = tmp_path / f"bad{i}"
        bad.write_bytes(bytes(changed))
        assert openssl_verify(pub, bad, sig) != 0, f"byte {i} changed yet verified"


def test_manifest_binds_everything(project):
    ctl = Controller(project)
    m, data, _sig = ctl.make_manifest("web2", "stable-default")
    parsed = manifest.parse(data)
    assert parsed == m
    assert parsed.host == "web2" and parsed.base == "stable-default"
    assert parsed.expires > parsed.issued and parsed.serial > 0
    assert parsed.system.name == "fruix-system-web2"
    assert len(parsed.items) == 4
    store = ctl.builder.store
    for it in parsed.items:
        assert it == store.for_manifest(store.get(it.path))
        assert it.listing == hashlib.sha256(store.listing(it.path)).hexdigest()
        zst = store.compressed(it.path).read_bytes()
        assert it.zstd == hashlib.sha256(zst).hexdigest()
        assert zstandard.ZstdDecompressor().decompressobj().decompress(zst) == \
            store.archive(it.path).read_bytes()


def test_private_key_is_never_printed(project, tmp_path):
    proc = inv_cmd(project, "keys.generate", "--name", "ops", "--dir", str(tmp_path), check=True)
    key = (tmp_path / "ops.key").read_text()
    assert (tmp_path / "ops.key").stat().st_mode & 0o777 == 0o600
    body = "".join(key.splitlines()[1:-1])
    assert body not in proc.stdout + proc.stderr
    assert "BEGIN PUBLIC KEY" in (tmp_path / "ops.pub").read_text()
    again = inv_cmd(project, "keys.generate", "--name", "ops", "--dir", str(tmp_path))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert (tmp_path / "ops.key").read_text() == key


def test_passphrase_protected_key(tmp_path, monkeypatch):
    from fruixops.store import keys
    from fruixops.errors import UserError
    key_path, _ = keys.generate(tmp_path, "locked", passphrase="s3cret")
    assert b"ENCRYPTED" in key_path.read_bytes()
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "s3cret")
    assert keys.load_private(key_path) is not None
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "wrong")
    with pytest.raises(UserError, match="wrong passphrase"):
        keys.load_private(key_path)


def test_parser_rejects_malformed():
    good = (b"fruixops-manifest 3\nhost h\nserial 1\nissued 1\nexpires 2\n"
            b"system /frx/store/" + b"a" * 64 + b"-s\nbase b\nversion-label l\nsigner k\n"
            b"item /frx/store/" + b"a" * 64 + b"-s " + b"b" * 64 + b" 10 - " + b"c" * 64
            + b" " + b"d" * 64 + b"\nend\n")
    assert manifest.parse(good).items[0].listing == "c" * 64
    assert manifest.parse(good).items[0].zstd == "d" * 64
    for bad in (good.replace(b"host h\n", b""), good.replace(b"end\n", b""),
                good.replace(b"serial 1", b"serial x"), good + b"extra\n",
                good.replace(b" 10 -", b" 10 /frx/store/" + b"c" * 64 + b"-other"),
                good.replace(b"host h", b"host h\nhost i"),
                good.replace(b" " + b"c" * 64, b""),               # no listing hash
                good.replace(b" " + b"d" * 64, b""),               # no zstd hash
                good.replace(b"c" * 64, b"c" * 63),
                good.replace(b"fruixops-manifest 3", b"fruixops-manifest 4")):
        with pytest.raises(manifest.ManifestError):
            manifest.parse(bad)


def test_format_1_manifests_are_still_read():
    # What hosts deployed before listing hashes keep for their generations.
    old = (b"fruixops-manifest 1\nhost h\nserial 1\nissued 1\nexpires 2\n"
           b"system /frx/store/" + b"a" * 64 + b"-s\nbase b\nversion-label l\nsigner k\n"
           b"item /frx/store/" + b"a" * 64 + b"-s " + b"b" * 64 + b" 10 -\nend\n")
    m = manifest.parse(old)
    assert m.items[0].size == 10 and m.items[0].listing is None
    with pytest.raises(manifest.ManifestError):
        manifest.parse(old.replace(b" 10 -", b" 10 - " + b"c" * 64))     # format 1, 6 fields


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parser_never_crashes(data):
    try:
        manifest.parse(data)
    except manifest.ManifestError:
        pass
