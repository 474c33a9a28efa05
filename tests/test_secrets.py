"""Secrets on the controller and in the host's sh, without the lab: the
controller seals (cryptography), the receiver's own functions open
(openssl, dash), with the right key only, refusing a tampered ciphertext
before decrypting; signed deliveries; declarations refused with their file
and line; what the system item carries (never a value)."""

import hashlib
import hmac
import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fruixops.errors import UserError
from fruixops.system.secrets import declare, seal, sources

HOST = Path(__file__).resolve().parent.parent / "fruixops" / "host"


def pem(private):
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


class HostSh:
    """The receiver's parts (as installed, minus the dispatch) run by dash in
    a scratch state directory: STATE, GENS and the secrets tmpfs moved there
    (a plain directory: the lab tests mount the real tmpfs)."""

    def __init__(self, root, name="web1"):
        self.root = root
        self.state = root / "state"
        (self.state / "secrets").mkdir(parents=True)
        (self.state / "trusted").mkdir()
        (self.state / "host-name").write_text(name + "\n")
        self.key = X25519PrivateKey.generate()
        (self.state / "secrets" / "key.pem").write_bytes(pem(self.key))
        self.der = seal.public_der(self.key.public_key())

    def trust(self, signing_key, name="ops"):
        (self.state / "trusted" / f"{name}.pem").write_bytes(
            signing_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))

    def run(self, script):
        parts = "\n".join((HOST / p).read_text()
                          for p in ("receiver.sh", "land.sh", "switch.sh", "secrets.sh"))
        prog = parts + f"""
STATE={self.root}/state; SECRETS_STATE=$STATE/secrets; SECRETS_DIR={self.root}/run
GENS={self.root}/gens
secrets_tmpfs() {{ mkdir -p "$SECRETS_DIR"; }}
secrets_tmp
{script}
"""
        return subprocess.run(["dash", "-c", prog], capture_output=True)


@pytest.fixture
def host(tmp_path):
    return HostSh(tmp_path)


def test_the_host_opens_what_the_controller_sealed(host, tmp_path):
    for value in (b"x", b"hunter2\n", bytes(range(256)) * 3, os.urandom(1 << 20)):
        (tmp_path / "sealed").write_bytes(seal.seal("web1", "db", "1", value, host.der))
        r = host.run(f'open_sealed {tmp_path}/sealed {tmp_path}/out || '
                     '{ echo "$SEALED_WHY" >&2; exit 2; }')
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "out").read_bytes() == value
        # The controller's own reading of the format agrees.
        assert seal.open_sealed((tmp_path / "sealed").read_bytes(), host.key) == value


def test_the_sh_hmac_is_rfc_2104(host):
    # Keys with bytes that XOR to 0 with either pad, and the empty message.
    for key in (bytes([0x36] * 32), bytes([0x5c] * 32), bytes(32), os.urandom(32)):
        for msg in (b"", b"abc\n", os.urandom(5000)):
            (host.root / "msg").write_bytes(msg)
            r = host.run(f"hmac_sha256 {key.hex()} {host.root}/msg")
            assert r.stdout.decode().strip() == hmac.new(key, msg, hashlib.sha256).hexdigest()


def test_another_key_cannot_open_it(host, tmp_path):
    other = X25519PrivateKey.generate()
    sealed = seal.seal("web1", "db", "1", b"the value", seal.public_der(other.public_key()))
    (tmp_path / "sealed").write_bytes(sealed)
    r = host.run(f'open_sealed {tmp_path}/sealed {tmp_path}/out || '
                 '{ echo "$SEALED_WHY" >&2; exit 2; }')
    assert r.returncode == 2 and b"does not have" in r.stderr
    # Claiming this host's key in the header does not help: the keys this
    # host derives are not the ones it was sealed with, the MAC says so.
    forged = sealed.replace(f"key {seal.key_id(seal.public_der(other.public_key()))}".encode(),
                            f"key {seal.key_id(host.der)}".encode())
    (tmp_path / "sealed").write_bytes(forged)
    r = host.run(f'open_sealed {tmp_path}/sealed {tmp_path}/out || '
                 '{ echo "$SEALED_WHY" >&2; exit 2; }')
    assert r.returncode == 2 and b"MAC does not verify" in r.stderr
    assert not (tmp_path / "out").exists()
    # And decrypting without the MAC check gives noise, not the value.
    with pytest.raises(ValueError):
        seal.open_sealed(forged, host.key)


def test_a_tampered_ciphertext_is_refused_before_anything_is_decrypted(host, tmp_path):
    sealed = seal.seal("web1", "db", "1", b"A" * 64, host.der)
    lines = sealed.split(b"\n")
    ct = bytearray(lines[6])
    ct[10] = ord("B") if ct[10] != ord("B") else ord("C")
    for bad in (b"\n".join(lines[:6] + [bytes(ct)] + lines[7:]),
                sealed.replace(b"name db", b"name dc"),
                sealed.replace(b"version 1", b"version 2")):
        (tmp_path / "sealed").write_bytes(bad)
        r = host.run(f'open_sealed {tmp_path}/sealed {tmp_path}/out || '
                     '{ echo "$SEALED_WHY" >&2; exit 2; }')
        assert r.returncode == 2 and b"MAC does not verify" in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


def test_no_key_ever_appears_on_a_command_line():
    # ps shows every process's arguments to every user: openssl's kdf, mac
    # and enc -K would put the keys there; the host code never calls them.
    text = (HOST / "secrets.sh").read_text()
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    for forbidden in ("openssl kdf", "openssl mac", " -K ", "hexkey", "-kdfopt", "-macopt",
                      "-hmac", "-pass pass:", "-k "):
        assert forbidden not in code, forbidden


def delivery_files(host, root, sealed, key, now=None, host_name="web1", lifetime=600):
    data, sig = seal.delivery(host_name, sealed, key, "ops", lifetime=lifetime, now=now)
    (root / "d").write_bytes(data)
    (root / "d.sig").write_bytes(sig)
    return data


def test_a_delivery_is_kept_only_when_signed_for_this_host_and_new(host, tmp_path):
    ops = Ed25519PrivateKey.generate()
    host.trust(ops)
    keep = f"secrets_keep {tmp_path}/d {tmp_path}/d.sig"
    kept = host.state / "secrets" / "sealed" / "db" / "1"
    one = [seal.seal("web1", "db", "1", b"v1", host.der)]
    delivery_files(host, tmp_path, one, ops)
    r = host.run(keep)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["kept db 1"] and kept.read_bytes() == one[0]
    first = (tmp_path / "d").read_bytes(), (tmp_path / "d.sig").read_bytes()
    # Newer: kept, replacing the same version.
    two = [seal.seal("web1", "db", "1", b"v2", host.der)]
    delivery_files(host, tmp_path, two, ops)
    assert host.run(keep).returncode == 0 and kept.read_bytes() == two[0]
    # Replayed, another host's, untrusted signer, expired, a tampered
    # ciphertext under a good signature: refused, the newest kept.
    (tmp_path / "d").write_bytes(first[0])
    (tmp_path / "d.sig").write_bytes(first[1])
    cases = {"replay refused": None}
    r = host.run(keep)
    assert r.returncode == 2 and b"replay refused" in r.stderr
    delivery_files(host, tmp_path, two, ops, host_name="db1")
    cases["db1"] = host.run(keep)
    delivery_files(host, tmp_path, two, Ed25519PrivateKey.generate())
    cases["does not verify"] = host.run(keep)
    delivery_files(host, tmp_path, two, ops, now=time.time() - 3600)
    cases["expired"] = host.run(keep)
    bad = two[0].replace(b"ct ", b"ct A", 1)
    delivery_files(host, tmp_path, [bad], ops)
    cases["MAC does not verify"] = host.run(keep)
    for why, r in cases.items():
        if r is None:
            continue
        assert r.returncode == 2 and why.encode() in r.stderr, (why, r.stderr)
        assert kept.read_bytes() == two[0]


def test_kept_versions_are_those_a_generation_names(host, tmp_path):
    ops = Ed25519PrivateKey.generate()
    host.trust(ops)
    # Generation 1's system names db 1; a delivery of db 2 (generation 2 to come).
    system = tmp_path / "system1"
    (system / "config").mkdir(parents=True)
    (system / "config" / "secrets").write_text("db 1 /var/run/fruix/secrets/db root - 0400\n")
    (tmp_path / "gens" / "1").mkdir(parents=True)
    (tmp_path / "gens" / "1" / "closure").symlink_to(system)
    for version in ("1", "2"):
        delivery_files(host, tmp_path, [seal.seal("web1", "db", version, b"v", host.der)], ops)
        assert host.run(f"secrets_keep {tmp_path}/d {tmp_path}/d.sig").returncode == 0
    sealed = host.state / "secrets" / "sealed" / "db"
    assert sorted(p.name for p in sealed.iterdir()) == ["1", "2"]
    # Generation 1 gone (gc): the next delivery lets its version go.
    (tmp_path / "gens" / "1" / "closure").unlink()
    delivery_files(host, tmp_path, [seal.seal("web1", "db", "2", b"v", host.der)], ops)
    assert host.run(f"secrets_keep {tmp_path}/d {tmp_path}/d.sig").returncode == 0
    assert sorted(p.name for p in sealed.iterdir()) == ["2"]


# --- declarations ------------------------------------------------------------

class Host:
    name, where = "web1", "inventories/x.yaml:3:5"

    def __init__(self, secrets):
        self.vars = {"secrets": secrets}
        self.var_where = {"secrets": "inventories/x.yaml:9:7"}

    def var(self, key, default=None):
        return self.vars.get(key, default)


def test_declarations_and_their_defaults():
    got = declare.declared(Host({
        "db": {"command": "pass show db"},
        "tls-key": {"file": "tls.key", "path": "/usr/local/etc/nginx/tls.key",
                    "owner": "www", "group": "www", "mode": "0440", "version": 3},
        "token": {"env": "API_TOKEN", "mode": 0o400}}))
    assert [s.line() for s in got] == [
        "db 1 /var/run/fruix/secrets/db root - 0400",
        "tls-key 3 /usr/local/etc/nginx/tls.key www www 0440",
        "token 1 /var/run/fruix/secrets/token root - 0400"]
    assert got[1].base == "inventories"
    assert declare.paths(Host({"db": {"env": "X"}})) == {"db": "/var/run/fruix/secrets/db"}


@pytest.mark.parametrize("secrets, message", [
    ({"db": {"value": "hunter2"}}, "unknown field 'value'"),
    ({"db": {}}, "needs exactly one of file, command, env (not none)"),
    ({"db": {"file": "a", "env": "B"}}, "(not file, env)"),
    ({"db": {"env": "A B"}}, "env must name an environment variable"),
    ({"db": {"env": "A", "mode": 400}}, "not 0620; write it quoted"),
    ({"db": {"env": "A", "mode": "0755"}}, "at most 0644"),
    ({"db": {"env": "A", "path": "relative"}}, "path must be an absolute file path"),
    ({"db": {"env": "A", "path": "/a/../etc/shadow"}}, "no .."),
    ({"db": {"env": "A", "path": "/frx/store/x"}}, "under /frx or /var/lib/fruix"),
    ({"a": {"env": "A", "path": "/x/s"}, "b": {"env": "B", "path": "/x/s"}}, "both go to /x/s"),
    ({"../x": {"env": "A"}}, "bad secret name"),
    ({"db": {"env": "A", "owner": "a b"}}, "owner must be an account"),
    ({"db": {"env": "A", "version": "1 2"}}, "version must be a tag"),
    (["db"], "secrets must be a mapping"),
])
def test_bad_declarations_are_one_line_with_file_and_line(secrets, message):
    with pytest.raises(UserError) as exc:
        declare.declared(Host(secrets))
    assert message in str(exc.value)
    assert str(exc.value).startswith("inventories/x.yaml:9:7: ")


def test_sources_and_their_failures_name_the_secret_never_the_value(tmp_path):
    (tmp_path / "v").write_bytes(b"from-a-file\n")

    def secret(**kw):
        s = declare.declared(Host({"s": kw}))[0]
        return declare.Secret(**{**s.__dict__, "base": str(tmp_path)})

    assert sources.read(secret(file="v")).bytes() == b"from-a-file\n"
    assert sources.read(secret(command="printf 'out\\n'")).bytes() == b"out\n"
    assert sources.read(secret(env="S"), {"S": "env-value"}).bytes() == b"env-value"
    value = sources.read(secret(env="S"), {"S": "env-value"})
    assert "env-value" not in repr(value) and "env-value" not in str(value)
    value.wipe()
    assert value.bytes() == b""
    for kw, why in (({"file": "missing"}, "cannot read"),
                    ({"command": "echo s3cr3t-value; echo pass: no such entry >&2; exit 1"},
                     "exited with status 1: pass: no such entry"),
                    ({"env": "UNSET_VAR_X"}, "UNSET_VAR_X is not set"),
                    ({"command": "true"}, "empty value")):
        with pytest.raises(sources.SourceFailed) as exc:
            sources.read(secret(**kw), {})
        line = str(exc.value)
        assert "secret 's'" in line and why in line and "\n" not in line
        assert "s3cr3t-value" not in line


def test_the_system_item_carries_versions_never_values(project, tmp_path):
    from fruixops.system import build
    from fruixops.inventory import model as inventory
    inv = inventory.load(project)
    host = inv.host("web2")
    base = inv.base_for(host, None)
    from fruixops.system.config import render
    from fruixops.system.services import declare
    config = render.render(host, inv, declare.services_of(host))
    plain = build.system_declaration(host, base, config)
    assert "secrets" not in plain          # a host without secrets builds as before
    host.vars["secrets"] = {"db": {"env": "DB_PASSWORD"}}
    decl = build.system_declaration(host, base, config)
    assert decl["secrets"] == [{"name": "db", "version": "1", "path":
                                "/var/run/fruix/secrets/db", "owner": "root", "group": "-",
                                "mode": "0400"}]
    entries = dict((name, data) for name, _, data in
                   build.system_entries(decl, {"kernel": "/k", "bootloader": "/b",
                                               "runtime": "/r"}, "/frx/store/x", config))
    listed = entries["config/secrets"][0].decode()
    assert listed.splitlines()[-1] == "db 1 /var/run/fruix/secrets/db root - 0400"
    # The system's activation (the receiver's, which places its secrets).
    assert "activate --boot \"$system\"" in entries["activate"][0].decode()
