"""Least privilege on the lab's real sshd hosts: mon1's root key is
restricted to the receiver (PermitRootLogin forced-commands-only), db1 is a
stock host (PermitRootLogin no) reached as "deploy" through doas, web3 sits
behind a bastion. Every fruixops command works through each; nothing else
does."""

import os
import subprocess

import paramiko
import pytest

from conftest import host_snapshot, inv_cmd, openssh
from fruixops.rollout import checks, deploy
from fruixops.remote import receiver
from fruixops.rollout.checks import Check
from fruixops.remote.connection import HostConnection
from fruixops.errors import HostKeyError


def _disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def test_every_command_works_through_the_restricted_key(fresh, extra_key):
    """mon1 accepts only the receiver; deploy, trial, plan, diff, status,
    generations, rollback, reboot, verify, gc, trust changes and bootstrap
    all go through it, and an outdated receiver is replaced only on a
    signed statement."""
    ctl = fresh("mon1")
    inv = ctl.inventory.path

    def ok(*args):
        proc = inv_cmd(inv, *args)
        assert proc.returncode == 0, f"inv {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    ok("deploy", "--host", "mon1", "--reboot")
    assert "stable-canary" in ok("plan", "--host", "mon1", "--base", "stable-canary")
    ok("deploy", "--host", "mon1", "--base", "stable-canary", "--trial")
    assert '"generation": 2' in ok("status", "--host", "mon1", "--json")
    assert "stable-canary" in ok("diff", "--host", "mon1")
    ok("generations", "--host", "mon1")
    ok("rollback", "--host", "mon1", "--reboot")
    ok("reboot", "--host", "mon1")
    ok("verify", "--host", "mon1")
    ok("gc", "--host", "mon1", "--keep", "2", "--dry-run")
    ok("bootstrap", "--host", "mon1")
    pub = ctl.inventory.settings.trusted_keys[0]
    ok("trust.add", "--host", "mon1", "--key", str(pub.with_name("extra.pub")))
    ok("trust.remove", "--host", "mon1", "--name", "extra")
    # An outdated receiver is replaced by a signed install-receiver.
    installed = _disk(ctl, "mon1") / receiver.PATH.lstrip("/")
    installed.write_bytes(receiver.source() + b"# an older receiver\n")
    ok("status", "--host", "mon1")
    assert installed.read_bytes() == receiver.source()
    assert os.access(installed, os.X_OK)


@pytest.fixture(scope="module")
def extra_key(project):
    from fruixops.store import keys
    keys.generate(project.parent.parent / "keys", "extra", overwrite=True)


REFUSED = [
    ("id",),                                   # any other command
    (),                                        # a shell
    ("status; id",),                           # injected arguments
    ("status $(id)",),
    ("status `id`",),
    ("status\nid",),
    ("status | id",),
    ("set-host-name ../../etc",),
    ("manifest ../../../etc/passwd",),
    ("check 1 ../x",),
    ("frobnicate",),                           # an unknown command
    ("sh -c id",),
]


def test_the_restricted_key_refuses_everything_else(fresh, tmp_path):
    ctl = fresh("mon1")
    deploy.deploy(ctl, "mon1")
    disk = _disk(ctl, "mon1")
    before = host_snapshot(disk)
    for args in REFUSED:
        r = openssh(ctl, "mon1", *args)
        assert r.returncode != 0 and b"uid=" not in r.stdout, (args, r)
        assert b"refused: " in r.stderr, (args, r.stderr)
    # scp (and its SFTP mode): the forced command answers, not a file server.
    for mode in ("-O", "-s"):
        target = tmp_path / f"passwd{mode}"
        r = subprocess.run(["scp", mode, "-i", str(disk.parent.parent / "id_ed25519"),
                            "-P", str(ctl.inventory.host("mon1").var("ssh_port")),
                            "-o", f"UserKnownHostsFile={ctl.inventory.settings.known_hosts}",
                            "-o", "BatchMode=yes", "root@127.0.0.1:/etc/hostname", str(target)],
                           capture_output=True, timeout=30)
        assert r.returncode != 0 and not target.exists()
    # Port forwarding, either way: the key is restricted (no forwarding).
    hc = HostConnection(ctl.inventory.host("mon1"), ctl.inventory.settings.known_hosts).open()
    try:
        with pytest.raises(paramiko.ChannelException):
            hc.conn.transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0))
        with pytest.raises(paramiko.SSHException):
            hc.conn.transport.request_port_forward("127.0.0.1", 0)
        # The receiver's own commands do work through the same key.
        assert hc.run("version").out.strip() == receiver.version()
    finally:
        hc.close()
    assert host_snapshot(disk) == before


def test_only_signed_checks_run(fresh):
    """A check the manifest of the generation does not carry never runs,
    whatever the controller asks; one it carries runs as signed, even if
    the controller asks for it with another command."""
    ctl = fresh("mon1")
    r = deploy.deploy(ctl, "mon1", reboot=True)
    marker = _disk(ctl, "mon1") / "var/lib/fruix/pwned"
    hc = deploy.connect(ctl, ctl.inventory.host("mon1"))
    try:
        unsigned = checks.run_one(hc, Check("pwn", "touch /var/lib/fruix/pwned"), r.generation)
        assert not unsigned.ok and "has no check 'pwn'" in unsigned.detail
        same_name = checks.run_one(hc, Check("sshd_under_shepherd", "touch /var/lib/fruix/pwned"),
                                   r.generation)
        assert same_name.ok
        booted = checks.run_one(hc, checks.booted_check(), r.generation)
        assert booted.ok
        # A rollback runs the checks signed with the generation it returns
        # to: this one, signed only with generation 2, would fail on 1.
        only_p1 = Check("runs stable-canary", "grep -q 'version_label=15.0-STABLE-p1' "
                        "/run/current-system/metadata")
    finally:
        hc.close()
    assert not marker.exists()
    second = deploy.deploy(ctl, "mon1", "stable-canary", reboot=True, checks=(only_p1,))
    assert second.checks["runs stable-canary"] == "ok"
    gen, state = deploy.rollback(ctl, "mon1", reboot=True, checks=True)
    assert (gen, state.booted) == (r.generation, r.closure)
    hc = deploy.connect(ctl, ctl.inventory.host("mon1"))
    try:
        assert "runs stable-canary" in {c.name for c in deploy.signed_checks(hc, second.generation)}
        assert "runs stable-canary" not in {c.name for c in deploy.signed_checks(hc, gen)}
        assert not checks.run_one(hc, only_p1, gen).ok
    finally:
        hc.close()


def test_keys_authorize_restricts_a_root_key(fresh, tmp_path):
    """`inv keys.authorize`, run over the administrator's root login, leaves
    the deploy key able to run the receiver and nothing else."""
    ctl = fresh("web2")
    lab_dir = ctl.inventory.path.parent / "../.lab"
    key = lab_dir / "id_ed25519"
    printed = inv_cmd(ctl.inventory.path, "keys.authorize", "--host", "web2",
                      "--key", f"{key}.pub", "--print-only", check=True).stdout
    assert printed.startswith(f'restrict,command="{receiver.PATH} --ssh" ssh-ed25519 ')
    try:
        inv_cmd(ctl.inventory.path, "keys.authorize", "--host", "web2", "--key", f"{key}.pub",
                "--admin-key", str(key), "--file", "/run/lab/ssh/authorized_keys", check=True)
        authorized = (lab_dir / "web2" / "ssh" / "authorized_keys").read_text()
        assert authorized == printed.splitlines()[0] + "\n"
        r = openssh(ctl, "web2", "id")
        assert r.returncode == 2 and b"refused: " in r.stderr
        # The inventory says so: every command goes through the receiver.
        text = ctl.inventory.path.read_text().replace("web2: {ssh_port:",
                                                      "web2: {restricted_key: true, ssh_port:")
        restricted = ctl.inventory.path.with_name("restricted.yaml")
        restricted.write_text(text)
        inv_cmd(restricted, "deploy", "--host", "web2", "--reboot", check=True)
        assert '"generation": 1' in inv_cmd(restricted, "status", "--host", "web2", "--json",
                                            check=True).stdout
    finally:
        fresh("web2")       # the lab's own authorized_keys again


def test_db1_deploys_rolls_back_and_reboots_through_doas(fresh):
    ctl = fresh("db1")
    first = deploy.deploy(ctl, "db1", "stable-default", reboot=True)
    second = deploy.deploy(ctl, "db1", "stable-canary", reboot=True,
                           checks=checks.BOOT_CHECKS)
    assert second.booted == second.closure and all(v == "ok" for v in second.checks.values())
    gen, state = deploy.rollback(ctl, "db1", reboot=True, checks=True)
    assert (gen, state.booted) == (first.generation, first.closure)
    state = deploy.reboot_host(ctl, "db1")
    assert state.booted_generation == first.generation
    # Root cannot log in; deploy may run the receiver through doas, nothing else.
    assert openssh(ctl, "db1", "id").returncode == 255
    assert b"uid=60" in openssh(ctl, "db1", "id", user="deploy").stdout
    r = openssh(ctl, "db1", "doas -n sh -c id", user="deploy")
    assert r.returncode != 0 and b"uid=0" not in r.stdout
    r = openssh(ctl, "db1", f"doas -n {receiver.PATH} 'status;id'", user="deploy")
    assert r.returncode == 2 and b"refused: " in r.stderr and b"uid=0" not in r.stdout


def test_web3_through_the_bastion_and_its_host_key_is_checked(fresh, tmp_path):
    ctl = fresh("web3")
    r = deploy.deploy(ctl, "web3", "stable-default", reboot=True)
    assert r.booted == r.closure
    host = ctl.inventory.host("web3")
    jump_port = host.var("ssh_proxy_jump").rsplit(":", 1)[1]
    known = ctl.inventory.settings.known_hosts.read_text().splitlines()
    entry = f"[127.0.0.1]:{jump_port}"
    assert any(ln.split()[0] == entry for ln in known)
    other = (ctl.inventory.settings.known_hosts.parent / "web1" / "ssh" /
             "ssh_host_ed25519_key.pub").read_text().split()
    changed = tmp_path / "changed"
    changed.write_text("".join(f"{entry} {other[0]} {other[1]}\n" if ln.split()[0] == entry
                               else ln + "\n" for ln in known))
    with pytest.raises(HostKeyError, match=r"CHANGED for the bastion"):
        HostConnection(host, changed).open()
    unknown = tmp_path / "unknown"
    unknown.write_text("".join(ln + "\n" for ln in known if ln.split()[0] != entry))
    with pytest.raises(HostKeyError, match=r"unknown SSH host key for the bastion"):
        HostConnection(host, unknown).open()
