"""Deploys against the lab's real sshd hosts: the Fruix phase 15.2 story,
what a deploy sends, what a host refuses, and the commands typed by hand."""

import json
import re

import pytest

from conftest import host_snapshot, inv_cmd
from fruixops.rollout import deploy
from fruixops.store import keys, manifest
from fruixops.rollout import push, story
from fruixops.remote.connection import HostConnection
from fruixops.controller import Controller
from fruixops.rollout.switch import deployer_identity
from fruixops.errors import HostError, HostKeyError, HostUnreachable


def test_fruix_phase_15_2_story(fresh):
    ctl = fresh("web1")
    lines = []
    assert story.run(ctl, "web1", out=lines.append), "\n".join(lines)
    kv = dict(line.split("=", 1) for line in lines)
    assert kv["current_base_version_label"] == "15.0-STABLE"
    assert kv["candidate_base_version_label"] == "15.0-STABLE-p1"
    assert kv["current_closure"] != kv["candidate_closure"]
    assert kv["rollback_closure"] == kv["current_closure"]
    for key in ("side_by_side_base_versions", "current_closure_unchanged",
                "base_rollforward_and_rollback", "redeploy_same_closure_path"):
        assert kv[key] == "ok"
    root = _disk(ctl, "web1")    # both closures are on the host's disk, side by side
    assert (root / kv["current_closure"].lstrip("/")).is_dir()
    assert (root / kv["candidate_closure"].lstrip("/")).is_dir()


def _disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def test_same_closure_twice_sends_nothing_the_second_time(fresh):
    ctl = fresh("web2")
    first = deploy.deploy(ctl, "web2", "stable-default")
    assert first.changed and first.items_sent == 4
    # zstd by default where the host has it: the 4.3 MB closure travels smaller.
    items = sum(it.size for it in ctl.closure(ctl.inventory.host("web2"),
                                              ctl.inventory.base("stable-default")))
    assert first.compressed and 0 < first.bytes_sent < items / 2
    again = deploy.deploy(ctl, "web2", "stable-default")
    assert not again.changed and again.items_sent == 0 and again.bytes_sent == 0
    assert again.generation == first.generation
    # Back and forth: items already on the host are never sent again.
    deploy.deploy(ctl, "web2", "stable-canary")
    back = deploy.deploy(ctl, "web2", "stable-default")
    assert back.changed and back.items_sent == 0
    assert back.closure == first.closure


def _send(ctl, host_name, data, sig):
    """Offer a (possibly hostile) manifest to a host, as a deploy would."""
    hc = HostConnection(ctl.inventory.host(host_name), ctl.inventory.settings.known_hosts).open()
    try:
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        m = manifest.parse(data)
        return push.push(hc, m, data, sig, state.missing, ctl.builder.store, deployer_identity())
    finally:
        hc.close()


@pytest.fixture
def deployed_db2(fresh):
    # db2: these tests need a root shell on the host (db1 has none: doas).
    ctl = fresh("db2")
    deploy.deploy(ctl, "db2", "stable-default")
    return ctl


def test_untrusted_key_is_refused_and_host_unchanged(deployed_db2, tmp_path):
    ctl = deployed_db2
    before = host_snapshot(_disk(ctl, "db2"))
    other_key, _ = keys.generate(tmp_path, "intruder")
    intruder = Controller(ctl.inventory.path, key=other_key)
    _, data, sig = intruder.make_manifest("db2", "stable-canary")
    with pytest.raises(HostError, match="does not verify against any trusted key"):
        _send(intruder, "db2", data, sig)
    assert host_snapshot(_disk(ctl, "db2")) == before
    # The same through the command line: one line, exit status 2.
    proc = inv_cmd(ctl.inventory.path, "deploy", "--host", "db2", "--base", "stable-canary",
                   "--key", str(other_key))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "trusted key" in proc.stderr
    assert host_snapshot(_disk(ctl, "db2")) == before


def test_manifest_for_another_host_replayed_or_expired_is_refused(deployed_db2):
    ctl = deployed_db2
    disk = _disk(ctl, "db2")
    before = host_snapshot(disk)
    # For another host (properly signed).
    _, data, sig = ctl.make_manifest("web2", "stable-canary")
    with pytest.raises(HostError, match="is for host 'web2'"):
        _send(ctl, "db2", data, sig)
    # Expired (signed, for this host).
    m, _, _ = ctl.make_manifest("db2", "stable-canary")
    expired = manifest.Manifest(**{**m.__dict__, "issued": m.issued - 7200,
                                   "expires": m.issued - 3600, "serial": m.serial + 5})
    data = expired.render()
    with pytest.raises(HostError, match="expired"):
        _send(ctl, "db2", data, manifest.sign(data, ctl.signing_key))
    assert host_snapshot(disk) == before
    # A replay of a manifest the host accepted before.
    _, old_data, old_sig = ctl.make_manifest("db2", "stable-canary")
    _send(ctl, "db2", old_data, old_sig)
    deploy.deploy(ctl, "db2", "stable-default")
    after_deploys = host_snapshot(disk)
    with pytest.raises(HostError, match="replay refused"):
        _send(ctl, "db2", old_data, old_sig)
    assert host_snapshot(disk) == after_deploys


def test_a_held_lock_names_its_holder_and_a_stale_one_is_recovered(deployed_db2):
    ctl = deployed_db2
    hc = HostConnection(ctl.inventory.host("db2"), ctl.inventory.settings.known_hosts).open()
    try:
        # A live holder: a process on the host that keeps running.
        holder = hc.check("sleep 120 >/dev/null 2>&1 & "
                          "ln -s \"pid=$!,since=1,by=alice@ops,cmd=receive\" "
                          "/var/lib/fruix/fruixops/lock; echo $!").out.strip()
        with pytest.raises(HostError, match=r"locked: .*by=alice@ops"):
            deploy.deploy(ctl, "db2", "stable-canary")
        assert hc.run("test -L /var/lib/fruix/fruixops/lock").status == 0  # never taken from the living
        hc.check(f"kill {holder}; while kill -0 {holder} 2>/dev/null; do :; done")
    finally:
        hc.close()
    result = deploy.deploy(ctl, "db2", "stable-canary")   # holder gone: recovered
    assert result.changed and result.version_label == "15.0-STABLE-p1"


def test_bsdtar_host_deploys_and_boots(fresh):
    ctl = fresh("web3")
    hc = HostConnection(ctl.inventory.host("web3"), ctl.inventory.settings.known_hosts).open()
    try:
        assert "bsdtar" in hc.check("tar --version").out
    finally:
        hc.close()
    first = deploy.deploy(ctl, "web3", "stable-default")
    r = deploy.deploy(ctl, "web3", "stable-canary", reboot=True)
    assert r.booted == r.closure and r.items_sent == 4
    back, state = deploy.rollback(ctl, "web3", reboot=True)
    assert back == first.generation and state.booted == first.closure


def test_commands_typed_by_hand_tell_the_truth(lab, project):
    inv = project
    inv_cmd(inv, "lab.reset", "--host", "db2", check=True)
    up = inv_cmd(inv, "lab.up", "--host", "db2", check=True).stdout
    assert "installed stable-default as generation 1" in up

    def status():
        return json.loads(inv_cmd(inv, "status", "--host", "db2", "--json", check=True).stdout)

    s1 = status()    # a new lab host arrives installed, like a delivered machine
    assert s1["current"]["version_label"] == "15.0-STABLE" and s1["rollback"] is None
    assert s1["booted"]["closure"] == s1["current"]["closure"]
    out = inv_cmd(inv, "deploy", "--host", "db2", "--base", "stable-canary", check=True).stdout
    assert "15.0-STABLE-p1" in out
    s2 = status()
    assert s2["current"]["version_label"] == "15.0-STABLE-p1"
    assert s2["current"]["generation"] == s1["current"]["generation"] + 1
    assert s2["rollback"]["closure"] == s1["current"]["closure"]
    assert s2["booted"]["closure"] == s1["current"]["closure"]    # nothing rebooted yet
    inv_cmd(inv, "rollback", "--host", "db2", check=True)
    s3 = status()
    assert s3["current"] == s1["current"] and s3["rollback"] == s2["current"]
    reboot = inv_cmd(inv, "reboot", "--host", "db2", check=True).stdout
    assert s1["current"]["closure"] in reboot
    assert status()["booted"]["closure"] == s1["current"]["closure"]
    gens = json.loads(inv_cmd(inv, "generations", "--host", "db2", "--json", check=True).stdout)
    assert [g["generation"] for g in gens] == [1, 2]
    marks = {g["generation"]: g["marks"] for g in gens}
    assert "current" in marks[1] and "booted" in marks[1] and "rollback" in marks[2]
    assert all(g["signer"] == "lab" for g in gens)
    bad = inv_cmd(inv, "rollback", "--host", "db2", "--to", "9")
    assert bad.returncode == 2 and "no generation 9" in bad.stderr


def test_unknown_and_changed_host_keys_are_refused(lab, project, tmp_path):
    ctl = Controller(project)
    host = ctl.inventory.host("mon1")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="unknown SSH host key"):
        HostConnection(host, empty).open()
    line = next(ln for ln in ctl.inventory.settings.known_hosts.read_text().splitlines()
                if ln.startswith(f"[127.0.0.1]:{host.var('ssh_port')} "))
    other = (ctl.inventory.settings.known_hosts.parent / "web1" / "ssh" /
             "ssh_host_ed25519_key.pub").read_text().split()
    (tmp_path / "changed").write_text(f"{line.split()[0]} {other[0]} {other[1]}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        HostConnection(host, tmp_path / "changed").open()
    # Through the command line: one line, exit status 2, nothing auto-added.
    text = project.read_text().replace("known_hosts: ../.lab/known_hosts",
                                       f"known_hosts: {empty}")
    inv2 = project.with_name("nokeys.yaml")
    inv2.write_text(text)
    proc = inv_cmd(inv2, "status", "--host", "mon1")
    assert proc.returncode == 2 and "unknown SSH host key" in proc.stderr
    assert empty.read_text() == ""
    # Accepted only explicitly: without a terminal, only with the right fingerprint.
    refused = inv_cmd(inv2, "hostkey.accept", "--host", "mon1")
    assert refused.returncode == 2 and empty.read_text() == ""
    fp = refused.stdout.split()[-1]
    assert fp.startswith("SHA256:")
    wrong = inv_cmd(inv2, "hostkey.accept", "--host", "mon1", "--fingerprint", "SHA256:nope")
    assert wrong.returncode == 2 and empty.read_text() == ""
    inv_cmd(inv2, "hostkey.accept", "--host", "mon1", "--fingerprint", fp, check=True)
    assert inv_cmd(inv2, "status", "--host", "mon1").returncode == 0


def test_unreachable_host_exits_4(project, tmp_path, lab):
    text = re.sub(r"mon1: \{ssh_port: \d+", "mon1: {ssh_port: 1", project.read_text())
    inv2 = project.with_name("unreachable.yaml")
    inv2.write_text(text)
    proc = inv_cmd(inv2, "status", "--host", "mon1")
    assert proc.returncode == 4
    assert proc.stderr.startswith("fruixops: mon1: cannot reach")
    with pytest.raises(HostUnreachable):
        deploy.status(Controller(inv2), "mon1")


def test_bare_host_reboots_bare(fresh):
    ctl = fresh("mon1")
    state = deploy.reboot_host(ctl, "mon1")
    assert state.booted is None and state.current is None
