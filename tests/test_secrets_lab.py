"""Secrets on the lab (issue 25): a fleet deployed with secrets read from a
command, an environment variable and a file; then every byte fruixops left
anywhere -- each lab host's disk (/frx, the generations, /var/lib/fruix,
its /etc, its logs), the cache, a bundle, the controller's store, and every
command's output and --json -- is searched for each value: it is found only
at its declared path, with its declared owner and mode, and the default
place is a tmpfs. A host sealed to with the wrong key cannot decrypt; a
tampered ciphertext is refused and the previous value stays; a rotation
changes the file without a new generation; a rollback finds the secrets of
the generation it returns to."""

import json
import os
import secrets as pysecrets
import subprocess
from pathlib import Path

import pytest

from conftest import inv_cmd, openssh
from fruixops.remote import bundle
from fruixops.inventory import model as inventory
from fruixops.controller import Controller
from fruixops.rollout.deploy import connect
from fruixops.lab import Lab
from fruixops.lab.webcache import WebCache
from fruixops.system.secrets import hostkeys, seal

HOSTS = ["web2", "db1", "mon1"]       # root login, doas account, restricted key
DAEMON = 1                            # uid and gid of "daemon" (the machine's /etc/passwd)

BLOCK = """\
    secrets:
      db_password: {{command: "cat ../secret-src/db_password", owner: daemon, group: daemon,
                    mode: "0440", version: "{version}"}}
      api_token: {{env: FRUIXOPS_TEST_API_TOKEN}}
      tls_key: {{file: ../secret-src/tls.key, path: /etc/fleet/tls.key}}
"""


def variant(project, version="1"):
    """The lab-cache inventory with the secrets block in all's vars."""
    text = project.with_name("lab-cache.yaml").read_text()
    assert "all:\n  vars:\n" in text
    path = project.with_name("lab-secrets.yaml")
    path.write_text(text.replace("all:\n  vars:\n", "all:\n  vars:\n" + BLOCK.format(
        version=version), 1))
    return path


@pytest.fixture
def fleet(lab, project, fresh):
    """Fresh HOSTS, the lab's cache up, the secrets' sources written."""
    path = variant(project)
    web = WebCache.of(Lab(inventory.load(path)))
    subprocess.run(["rm", "-rf", str(web.root)], check=True)
    web.up()
    src = project.parent.parent / "secret-src"
    src.mkdir(exist_ok=True)
    values = {"db_password": f"db-{pysecrets.token_hex(16)}\n",
              "api_token": f"api-{pysecrets.token_hex(16)}",
              "tls_key": f"-----BEGIN PRIVATE KEY-----\ntls-{pysecrets.token_hex(24)}\n"
                         "-----END PRIVATE KEY-----\n"}
    (src / "db_password").write_text(values["db_password"])
    (src / "tls.key").write_text(values["tls_key"])
    # Wiped hosts make new secret keys at their bootstrap: the records of
    # their earlier lives go, as an operator reinstalling them would do
    # (else every delivery is refused: sealed to a key the host no longer has).
    keys = hostkeys.path(inventory.load(path))
    if keys.exists():
        keys.write_text("".join(ln + "\n" for ln in keys.read_text().splitlines()
                                if ln.split()[0] not in HOSTS))
    fresh(*HOSTS)
    yield path, src, values
    web.down()


class Run:
    """inv commands, every output kept for the search."""

    def __init__(self, path, values):
        self.path, self.values, self.outputs = path, values, []

    def __call__(self, *args, ok=True):
        env = {"FRUIXOPS_TEST_API_TOKEN": self.values["api_token"]}
        proc = inv_cmd(self.path, *args, env=env)
        self.outputs.append((" ".join(args), proc.stdout + proc.stderr))
        if ok:
            assert proc.returncode == 0, f"inv {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc


def host_root(lab, name):
    """The host's / as its own processes see it (its mount namespace), from
    the machine: /proc/PID/root of its PID 1."""
    sup = lab.supervisor_pid(name)
    children = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    unshare = children[sup][0]
    return Path(f"/proc/{children[unshare][0]}/root")


def found_in(roots, needles, skip=()):
    """{needle: [files holding it]} over every regular file under *roots*."""
    hits = {n: [] for n in needles}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if any(str(dirpath).startswith(str(s)) for s in skip):
                continue
            for name in files:
                f = Path(dirpath) / name
                if f.is_symlink() or not f.is_file():
                    continue
                try:
                    data = f.read_bytes()
                except OSError:
                    continue
                for n in needles:
                    if n.encode() in data:
                        hits[n].append(str(f))
    return hits


def placed(root, path):
    """(content, uid, gid, mode) of *path* on the host. (/var/run is a link
    to /run on the lab's Linux, which /proc/PID/root would resolve in the
    machine's root.)"""
    f = root / path.lstrip("/").replace("var/run/", "run/", 1)
    st = f.stat()
    return f.read_text(), st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_a_fleet_with_secrets_leaves_each_value_only_at_its_path(fleet, lab, project, tmp_path):
    path, src, values = fleet
    run = Run(path, values)
    limit = ",".join(HOSTS)
    run("cache.push", "--limit", limit)
    run("plan", "--limit", limit, "--json")
    deployed = json.loads(run("deploy", "--limit", limit, "--reboot", "--json").stdout)
    assert deployed["exit_status"] == 0
    for h in deployed["hosts"]:
        assert sorted(h["results"][-1]["secrets"]) == ["api_token 1", "db_password 1", "tls_key 1"]
    run("status", "--limit", limit, "--json")
    bundle_file = tmp_path / "fleet.bundle"
    run("bundle.export", "--limit", "web2,db1", "--base", "stable-canary",
        "--out", str(bundle_file))

    # On each host, after its boot: where each secret was declared.
    for name in HOSTS:
        root = host_root(lab, name)
        mounts = (root.parent / "mounts").read_text().splitlines()
        assert any(m.split()[1:3] == ["/run/fruix/secrets", "tmpfs"] for m in mounts), name
        assert placed(root, "/var/run/fruix/secrets/db_password") == (
            values["db_password"], DAEMON, DAEMON, 0o440)
        assert placed(root, "/var/run/fruix/secrets/api_token") == (
            values["api_token"], 0, 0, 0o400)
        assert placed(root, "/etc/fleet/tls.key") == (values["tls_key"], 0, 0, 0o400)
        # The default directory lets services through, never lists names.
        st = (root / "run/fruix/secrets").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o711)

    # Everywhere else: nowhere. The test project holds every host's disk
    # (.lab/HOST: /frx, /var/lib/fruix, /boot, its /etc, its logs), the
    # cache, the controller's store (.frx), known_hosts and secret_keys.
    everywhere = project.parent.parent
    needles = {v.strip().splitlines()[-1 if k != "tls_key" else 1]: k for k, v in values.items()}
    hits = found_in([everywhere, bundle_file], list(needles), skip=[src])
    expected = {f"{lab.host_dir(n)}/etc.upper/fleet/tls.key" for n in HOSTS}
    for needle, files in hits.items():
        if needles[needle] == "tls_key":
            assert set(files) == expected, files
        else:
            assert files == [], (needles[needle], files)
    cache = Path(inventory.load(path).settings.cache.upload)
    assert any(cache.rglob("*.tar*")), "the cache was used"
    # The bundle does carry them, sealed:
    listing = subprocess.run(["tar", "-tf", str(bundle_file)], capture_output=True,
                             text=True).stdout.split()
    assert "hosts/web2/secrets" in listing and "hosts/db1/secrets.sig" in listing
    for args, out in run.outputs:
        for needle in needles:
            assert needle not in out, (args, needles[needle])


def test_rotation_wrong_keys_tampering_and_rollback(fleet, lab, project):
    path, src, values = fleet
    run = Run(path, values)
    run("deploy", "--host", "web2", "--reboot")
    run("deploy", "--host", "db1", "--reboot")
    root = host_root(lab, "web2")
    gens = lambda: sorted(p.name for p in (lab.disk("web2") / "var/lib/fruix/system/generations")
                          .iterdir() if not p.name.startswith("."))  # noqa: E731
    before = gens()
    system = os.readlink(root / "run/current-system")

    # Rotation: a new value from the same source, the same version tag: the
    # file changes, no generation is made, the running system is the same.
    rotated = f"db-{pysecrets.token_hex(16)}\n"
    (src / "db_password").write_text(rotated)
    out = run("secrets.rotate", "--host", "web2", "--name", "db_password").stdout
    assert "web2: kept db_password 1" in out and f"web2: activated {system}" in out
    assert placed(root, "/var/run/fruix/secrets/db_password") == (rotated, DAEMON, DAEMON,
                                                                  0o440)
    assert gens() == before and os.readlink(root / "run/current-system") == system

    # A tampered ciphertext (at rest on the host): refused by its MAC, the
    # previous plaintext stays.
    sealed = lab.disk("web2") / "var/lib/fruix/fruixops/secrets/sealed/db_password/1"
    good = sealed.read_bytes()
    lines = good.split(b"\n")
    ct = bytearray(lines[6])
    ct[-1] = ord("A") if ct[-1] != ord("A") else ord("B")
    sealed.write_bytes(b"\n".join(lines[:6] + [bytes(ct)] + lines[7:]))
    r = openssh(Controller(path), "web2", "sh", "/var/lib/fruix/fruixops/receiver",
                "secrets-activate")
    assert r.returncode == 2 and b"MAC does not verify" in r.stderr, r.stderr
    assert placed(root, "/var/run/fruix/secrets/db_password")[0] == rotated
    sealed.write_bytes(good)

    # Tampered on the way (a ciphertext changed under the fleet's
    # signature): refused before anything is kept.
    ctl = Controller(path)
    der = hostkeys.recorded(ctl.inventory, "web2")
    one = seal.seal("web2", "db_password", "1", b"forged\n", der)
    data, sig = seal.delivery("web2", [one], ctl.signing_key, ctl.signer)
    hc = connect(ctl, ctl.inventory.host("web2"))
    try:
        r = hc.run(hc.receiver("secrets-deliver"), stdin=bundle.small_tar(
            {"secrets": data.replace(b"ct ", b"ct A", 1), "secrets.sig": sig}))
        assert r.status == 2 and "signature does not verify" in r.err
        # Sealed by someone who knows the host's public key but not the
        # fleet's signing key: refused the same way.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        data, sig = seal.delivery("web2", [one], Ed25519PrivateKey.generate(), "mallory")
        r = hc.run(hc.receiver("secrets-deliver"), stdin=bundle.small_tar(
            {"secrets": data, "secrets.sig": sig}))
        assert r.status == 2 and "signature does not verify" in r.err
    finally:
        hc.close()
    assert sealed.read_bytes() == good
    assert placed(root, "/var/run/fruix/secrets/db_password")[0] == rotated

    # The wrong key: the controller's record for db1 replaced by another
    # host's key. Sealed to it, db1 cannot decrypt: refused, nothing changes.
    db1_root = host_root(lab, "db1")
    db1_before = placed(db1_root, "/var/run/fruix/secrets/db_password")
    keys_file = hostkeys.path(ctl.inventory)
    saved = keys_file.read_text()
    hostkeys.record(ctl.inventory, "db1", der)      # web2's key
    r = run("secrets.rotate", "--host", "db1", ok=False)
    assert r.returncode == 2 and "which this host does not have" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert placed(db1_root, "/var/run/fruix/secrets/db_password") == db1_before
    # (That the MAC fails too when the header names the host's own key:
    # tests/test_secrets.py, test_another_key_cannot_open_it.)
    keys_file.write_text(saved)
    sealed_db1 = lab.disk("db1") / "var/lib/fruix/fruixops/secrets/sealed/db_password/1"
    assert b"host db1" in sealed_db1.read_bytes()
    # A new key pair for db1: recorded, every secret delivered to it.
    old_id = seal.key_id(hostkeys.recorded(ctl.inventory, "db1"))
    out = run("secrets.rotate-key", "--host", "db1").stdout
    new_id = seal.key_id(hostkeys.recorded(Controller(path).inventory, "db1"))
    assert new_id != old_id and f"new secret key {new_id[:16]}" in out
    assert f"key {new_id}".encode() in sealed_db1.read_bytes()
    assert placed(db1_root, "/var/run/fruix/secrets/db_password")[0] == rotated

    # A new version of db_password for generation 2; generation 1 keeps
    # its own: a rollback boots into the value of version 1.
    v2 = f"db2-{pysecrets.token_hex(16)}\n"
    (src / "db_password").write_text(v2)
    variant(project, version="2")
    run("deploy", "--host", "web2", "--reboot")
    root = host_root(lab, "web2")
    assert placed(root, "/var/run/fruix/secrets/db_password")[0] == v2
    kept = sorted(p.name for p in sealed.parent.iterdir())
    assert kept == ["1", "2"]
    run("rollback", "--host", "web2", "--reboot")
    root = host_root(lab, "web2")
    assert placed(root, "/var/run/fruix/secrets/db_password") == (rotated, DAEMON, DAEMON,
                                                                  0o440)


def test_a_failing_source_fails_that_host_with_one_line_naming_the_secret(fleet, lab,
                                                                           project):
    path, src, values = fleet
    (src / "db_password").unlink()
    run = Run(path, values)
    r = run("deploy", "--host", "web2", "--json", ok=False)
    assert r.returncode == 2
    result = json.loads(r.stdout)["hosts"][0]
    assert result["failed"] and "secret 'db_password': its command exited with status 1" \
        in " ".join(result["messages"])
    # Nothing was sent: the host is as fresh as it was.
    assert not (lab.disk("web2") / "var/lib/fruix/system/generations").exists() or \
        not any((lab.disk("web2") / "var/lib/fruix/system/generations").iterdir())
