"""Host configuration on the lab (fruixops.system.config, the receiver's
activation): a template, an account with its SSH key and a sysctl land with
the first boot; a template change shows in plan's diff, switches live and
restarts only the service it notifies; a file edited by hand is reported
and kept aside; rollback puts the old file back live; a configuration whose
validation fails changes nothing and leaves the previous generation the
default."""

import re
import subprocess

import pytest

from conftest import inv_cmd, openssh, wait_until
from fruixops.rollout import deploy
from fruixops.controller import Controller

HOST = "web2"
TICK = "/usr/local/etc/tick.conf"


def ssh(ctl, command, check=True):
    proc = openssh(ctl, HOST, command)
    out = proc.stdout.decode()
    if check:
        assert proc.returncode == 0, f"{command}: {proc.returncode}\n{out}\n{proc.stderr.decode()}"
    return out


def service_pid(ctl, name):
    m = re.search(r"^  Running value is (\d+)\.$", ssh(ctl, f"herd status {name}", False), re.M)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="module")
def alice_key(tmp_path_factory):
    key = tmp_path_factory.mktemp("alice") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)],
                   check=True)
    return key


def variant(project, alice_key, greeting, extra=""):
    """The test inventory where web2 has a template notifying its tick
    service, the account alice (her key), a sysctl, and *extra*."""
    templates = project.parent / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "tick.conf.j2").write_text(
        "# tick's configuration, for {{ inventory_hostname }}\ngreeting {{ greeting }}\n")
    pub = alice_key.with_suffix(".pub").read_text().strip()
    text = project.read_text()
    marker = f"{HOST}: {{"
    assert marker in text
    inline = (f"greeting: {greeting}, "
              "services: [sshd, {name: tick, command: /bin/sleep, args: ['3600']}], "
              f"files: {{{TICK}: {{template: tick.conf.j2, notify: tick}}{extra}}}, "
              f"users: [{{name: alice, groups: [staff], authorized_keys: ['{pub}']}}], "
              "sysctl: {kern.ipc.somaxconn: 1024}, ")
    path = project.with_name("config-lab.yaml")
    path.write_text(text.replace(marker, marker + inline, 1))
    return path


def alice_ssh(ctl, alice_key, command):
    host = ctl.inventory.host(HOST)
    return subprocess.run(
        ["ssh", "-i", str(alice_key), "-p", str(host.var("ssh_port")),
         "-o", f"UserKnownHostsFile={ctl.inventory.settings.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=5", "alice@127.0.0.1", command],
        capture_output=True, timeout=60)


def test_configuration_boots_switches_live_keeps_hand_edits_and_rolls_back(
        fresh, project, alice_key):
    fresh(HOST)
    v1 = variant(project, alice_key, "hello")
    ctl = Controller(v1)
    r = deploy.deploy(ctl, HOST, reboot=True, install_bootloader=True)
    assert r.booted_generation == r.generation
    # The first boot applied it: the template, the account, the key.
    assert ssh(ctl, f"cat {TICK}") == f"# tick's configuration, for {HOST}\ngreeting hello\n"
    assert ssh(ctl, f"stat -c '%a %U' {TICK}").split() == ["644", "root"]
    # Her uid is the ledger's (the fleet's first accounts come from 1001);
    # her own group has the same number; her password is locked.
    uid = re.search(r"^alice:\*:(\d+):(\d+)::0:0::/home/alice:/bin/sh$",
                    ssh(ctl, "cat /etc/master.passwd"), re.M)
    assert uid and uid.group(1) == uid.group(2) and int(uid.group(1)) >= 1001
    assert re.search(r"^staff:[^:]*:[0-9]+:(.*,)?alice(,.*)?$", ssh(ctl, "cat /etc/group"), re.M)
    assert ssh(ctl, "cat /etc/sysctl.conf").endswith("kern.ipc.somaxconn=1024\n")
    # The real sshd reads the real account files: alice logs in with her key.
    login = alice_ssh(ctl, alice_key, "id -un; pwd")
    assert login.returncode == 0, login.stderr.decode()
    assert login.stdout.decode().split() == ["alice", "/home/alice"]
    assert ssh(ctl, "stat -c '%a %U' /home/alice/.ssh/authorized_keys").split() == ["600", "alice"]

    # A template change: plan shows the diff and a live switch (no reboot),
    # restarting tick only.
    v2 = variant(project, alice_key, "bonjour")
    plan = inv_cmd(v2, "plan", "--host", HOST,
                   check=True).stdout
    assert f"changed {TICK}" in plan and "-greeting hello" in plan and "+greeting bonjour" in plan
    assert "services to restart: tick" in plan and "sshd" not in plan.split(
        "services to restart:")[1].splitlines()[0]
    assert "reboot needed: no" in plan
    tick, sshd = service_pid(ctl, "tick"), service_pid(ctl, "sshd")
    assert tick and sshd
    ctl2 = Controller(v2)
    r2 = deploy.deploy(ctl2, HOST)
    assert r2.activation["activated"] and r2.activation["restarted"] == ["tick"], r2.activation
    assert ssh(ctl, f"cat {TICK}").endswith("greeting bonjour\n")
    assert ssh(ctl, "readlink /run/current-system").strip() == r2.closure
    new_tick = wait_until(lambda: service_pid(ctl, "tick"), 30, "tick running again")
    assert new_tick != tick and service_pid(ctl, "sshd") == sshd

    # Edited by hand: plan reports it, the next activation keeps it aside.
    ssh(ctl, f"echo 'greeting local' >>{TICK}")
    v3 = variant(project, alice_key, "salut")
    plan = inv_cmd(v3, "plan", "--host", HOST,
                   check=True).stdout
    assert f"edited {TICK} on the host" in plan
    verify = inv_cmd(v3, "verify", "--host", HOST)
    assert verify.returncode == 2 and f"config-edited {TICK}" in verify.stdout + verify.stderr
    r3 = deploy.deploy(Controller(v3), HOST)
    kept = [n for n in r3.notes if n.startswith(f"{TICK} was edited by hand")]
    assert kept, r3.notes
    copy = kept[0].split("kept at ")[1].split(",")[0]
    assert ssh(ctl, f"cat {copy}").endswith("greeting bonjour\ngreeting local\n")
    assert ssh(ctl, f"cat {TICK}").endswith("greeting salut\n")
    # inv diff between two generations on the host: the same diffs, and in --json.
    diff = inv_cmd(v3, "diff", "--host", HOST, "--from", str(r2.generation), "--to",
                   str(r3.generation), check=True).stdout
    assert "-greeting bonjour" in diff and "+greeting salut" in diff, diff
    import json
    as_json = json.loads(inv_cmd(v3, "diff", "--host", HOST, "--from", str(r2.generation),
                                 "--to", str(r3.generation), "--json", check=True).stdout)
    (tick_change,) = [f for f in as_json["config"]["files"] if f["path"] == TICK]
    assert tick_change["change"] == "changed" and "+greeting salut" in tick_change["diff"]
    assert as_json["config"]["restart"] == ["tick"]

    # Rollback, live: the previous generation's file, tick restarted again.
    before = service_pid(ctl, "tick")
    generation, _ = deploy.rollback(ctl, HOST)
    assert generation == r2.generation
    assert ssh(ctl, f"cat {TICK}").endswith("greeting bonjour\n")
    wait_until(lambda: service_pid(ctl, "tick") not in (None, before), 30, "tick restarted")


def test_a_configuration_that_fails_validation_changes_nothing(fresh, project, alice_key):
    fresh(HOST)
    v1 = variant(project, alice_key, "hello")
    ctl = Controller(v1)
    r1 = deploy.deploy(ctl, HOST, reboot=True, install_bootloader=True)
    config_before = ssh(ctl, "cat /etc/ssh/sshd_config")
    # sshd -t (the real OpenSSH) refuses the new sshd_config: nothing changes.
    bad = variant(project, alice_key, "bonjour",
                  extra=", /etc/ssh/sshd_config: {content: 'NoSuchOption yes\\n'}")
    with pytest.raises(deploy.DeployFailed) as failed:
        deploy.deploy(Controller(bad), HOST)
    assert "validate /etc/ssh/sshd_config failed" in str(failed.value)
    assert "bad configuration option" in str(failed.value).lower()
    assert ssh(ctl, "cat /etc/ssh/sshd_config") == config_before
    assert ssh(ctl, f"cat {TICK}").endswith("greeting hello\n")       # not half-applied
    assert ssh(ctl, "ls /etc/ssh/ | grep -c fruix || true").strip() == "0"   # no staged file left
    status = deploy.status(ctl, HOST)
    assert status.default == r1.generation, "the refused generation must not stay the default"

    # A failure part way through the switch (tick.conf already renamed into
    # place, then a file for an account the host does not have): the journal
    # puts tick.conf back.
    half = variant(project, alice_key, "bonjour",
                   extra=", /usr/local/etc/zz.conf: {content: 'x\n', owner: nosuchuser}")
    with pytest.raises(deploy.DeployFailed) as failed:
        deploy.deploy(Controller(half), HOST)
    assert "cannot give /usr/local/etc/zz.conf to nosuchuser" in str(failed.value)
    assert ssh(ctl, f"cat {TICK}").endswith("greeting hello\n")
    assert "zz.conf" not in ssh(ctl, "ls -a /usr/local/etc/")
    assert "fruix" not in ssh(ctl, "ls -a /usr/local/etc/")          # no staged file left
    assert "txn" not in ssh(ctl, "ls /var/lib/fruix/fruixops/config/")


def test_undefined_template_variable_fails_at_plan_time_with_file_and_line(project, alice_key):
    v = variant(project, alice_key, "hello")
    (project.parent / "templates" / "tick.conf.j2").write_text(
        "first line\ngreeting {{ greeting }}\nmissing {{ no_such_variable }}\n")
    proc = inv_cmd(v, "plan", "--host", HOST)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"templates/tick\.conf\.j2:3: .*'no_such_variable' is undefined", err), err


def test_the_lab_fleet_serves_nginx_from_its_template_and_a_change_restarts_nginx_only(
        fresh, project):
    """The lab inventory's own web tier: nginx (the real one) from
    inventories/templates/nginx.conf.j2, the ops account; a change of the
    greeting is a live switch that restarts nginx, not sshd."""
    import urllib.request
    host = "web1"
    ctl = fresh(host)
    port = ctl.inventory.host(host).var("ssh_port") + 100

    def get():
        """nginx's answer, or None while it is not listening (starting)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    deploy.deploy(ctl, host, reboot=True, install_bootloader=True)
    assert wait_until(get, 30, "nginx answering") == f"{host}: served by fruixops\n"
    pids = {s: service_pid_on(ctl, host, s) for s in ("nginx", "sshd")}
    assert all(pids.values()), pids
    changed = project.with_name("greeting.yaml")
    changed.write_text(project.read_text().replace("site_greeting: served by fruixops",
                                                   "site_greeting: still served"))
    plan = inv_cmd(changed, "plan", "--host", host, check=True).stdout
    assert "-            return 200 \"web1: served by fruixops\\n\";" in plan, plan
    assert "services to restart: nginx\n" in plan and "reboot needed: no" in plan
    r = deploy.deploy(Controller(changed), host)
    assert r.activation["restarted"] == ["nginx"], r.activation
    assert wait_until(lambda: get() == f"{host}: still served\n", 30, "the new greeting")
    assert service_pid_on(ctl, host, "sshd") == pids["sshd"]
    assert wait_until(lambda: service_pid_on(ctl, host, "nginx"), 30, "nginx back") != pids["nginx"]


def service_pid_on(ctl, host, name):
    out = openssh(ctl, host, f"herd status {name}").stdout.decode()
    m = re.search(r"^  Running value is (\d+)\.$", out, re.M)
    return int(m.group(1)) if m else None
