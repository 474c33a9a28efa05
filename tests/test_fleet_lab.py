"""Fleet rollouts on the 6-host lab: the shipped playbooks, a rollout that
halts and rolls its failed batch back, a trial boot of a kernel that never
comes up, and parallel deploys that build each shared item once."""

import json
import time

import pytest

from conftest import inv_cmd
from fruixops.rollout import deploy, fleet
from fruixops.inventory import model as inventory
from fruixops.inventory import limit
from fruixops.controller import Controller


@pytest.fixture
def installed_fleet(lab, project):
    """All six lab hosts wiped, booted and installed with stable-default."""
    inv = inventory.load(project)
    hosts = list(inv.hosts.values())
    lab.reset(hosts)
    lab.up(hosts)
    ctl = Controller(project)
    lab.install(ctl, hosts)
    return ctl


def states(ctl):
    outcomes, docs = fleet.status_many(ctl, list(ctl.inventory.hosts.values()))
    assert outcomes.exit_status() == 0
    return docs


def test_canary_playbook_then_rollback_fleet(installed_fleet):
    ctl = installed_fleet
    before = states(ctl)
    proc = inv_cmd(ctl.inventory.path, "play", "playbooks/canary.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["halted"] is None
    assert {h["host"]: h["status"] for h in report["hosts"]} == {
        n: "changed" for n in ctl.inventory.hosts}
    after = states(ctl)
    for name, doc in after.items():
        assert doc["current"]["version_label"] == "15.0-STABLE-p1"
        assert doc["booted"]["closure"] == doc["current"]["closure"]  # every host rebooted into it
        assert doc["rollback"]["closure"] == before[name]["current"]["closure"]
    # The canary went through a trial boot: its stderr log says so, in order.
    assert proc.stderr.index("STAGE [canary]") < proc.stderr.index("STAGE [web]")
    back = inv_cmd(ctl.inventory.path, "play", "playbooks/rollback-fleet.yaml")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "PLAY RECAP" in back.stdout
    final = states(ctl)
    for name, doc in final.items():
        assert doc["current"]["closure"] == before[name]["current"]["closure"]
        assert doc["booted"]["closure"] == before[name]["current"]["closure"]


FAILING = """
name: second batch fails
base: stable-canary
stages:
  - name: all hosts
    hosts: all
    serial: [1, 2]
    reboot: true
    rollback_on_failure: true
    checks:
      - name: not web3
        command: cat /var/lib/fruix/fruixops/host-name
        expect_output: '^(?!web3$)'
"""


def test_failed_batch_halts_and_rolls_back(installed_fleet, tmp_path):
    ctl = installed_fleet
    book_path = tmp_path / "failing.yaml"
    book_path.write_text(FAILING)
    before = states(ctl)
    # Ansible's order of `all` (a group's own hosts before its children's):
    # web2 | web3, db1 | db2, mon1 | web1 -- web3 fails in batch 2.
    assert [h.name for h in limit.select(ctl.inventory, "all")] == \
        ["web2", "web3", "db1", "db2", "mon1", "web1"]
    proc = inv_cmd(ctl.inventory.path, "play", str(book_path))
    assert proc.returncode == 2
    out = proc.stdout
    assert "HALTED" in out and "batch 2" in out
    recap = {line.split(":")[0].strip(): line for line in out.splitlines() if " : ok=" in line}
    assert "failed=1" in recap["web3"] and "rolled_back=1" in recap["web3"]
    assert "rolled_back=1" in recap["db1"]            # its batch went back with it
    for n in ("db2", "mon1", "web1"):
        assert "skipped=1" in recap[n] and "changed=0" in recap[n]
    after = states(ctl)
    assert after["web2"]["current"]["version_label"] == "15.0-STABLE-p1"   # batch 1 stays
    for n in ("web3", "db1"):                         # back on the generation they had, booted
        assert after[n]["current"] == before[n]["current"]
        assert after[n]["booted"]["closure"] == before[n]["current"]["closure"]
    for n in ("db2", "mon1", "web1"):                 # untouched: no new generation at all
        assert after[n] == before[n]
    assert "web3: refused" not in proc.stderr and "not web3" in out


def test_trial_of_a_kernel_that_never_boots_comes_back(installed_fleet):
    ctl = installed_fleet
    before = states(ctl)["web2"]
    proc = inv_cmd(ctl.inventory.path, "deploy", "--host", "web2", "--base", "broken-canary",
                   "--trial")
    assert proc.returncode != 0
    assert "did not come back; power-cycled; back on generation 1" in proc.stderr
    after = states(ctl)["web2"]
    assert after["booted"]["closure"] == before["current"]["closure"]
    assert after["current"] == before["current"] and after["next_boot"] is None


def test_trial_that_passes_becomes_current(installed_fleet):
    ctl = installed_fleet
    r = deploy.deploy(ctl, "web3", "stable-canary", trial=True)
    assert r.booted == r.closure and not r.rolled_back
    doc = states(ctl)["web3"]
    assert doc["current"]["generation"] == r.generation and doc["next_boot"] is None


def test_parallel_fleet_deploy_builds_each_shared_item_once(installed_fleet, lab, tmp_path):
    # A fresh local store, so every item is really built in this run.
    src = installed_fleet.inventory.path
    inv_text = src.read_text().replace("store: ../.frx", f"store: {tmp_path / 'store'}").replace(
        "../.frx/dist/lab", str((src.parent / "../.frx/dist/lab").resolve()))
    inv2 = src.with_name("fresh-store.yaml")
    inv2.write_text(inv_text)
    hosts = list(installed_fleet.inventory.hosts.values())

    def bare_fleet_deploy(forks):
        lab.reset(hosts)
        lab.up(hosts)
        ctl = Controller(inv2)
        t0 = time.monotonic()
        outcomes, _ = fleet.deploy_many(ctl, hosts, "stable-canary", forks=forks)
        elapsed = time.monotonic() - t0
        assert outcomes.exit_status() == 0
        assert all(o.changed == 1 and o.results[0]["items_sent"] == 4
                   for o in outcomes.values())
        return ctl, elapsed

    ctl, _ = bare_fleet_deploy(6)
    assert ctl.builder.built == 3 + len(hosts)     # 3 shared base items, one system per host
    # With the store warm, the same fleet deploy one host at a time and six at
    # a time (timings are for the record: a benchmark, not an assertion).
    ctl1, serial = bare_fleet_deploy(1)
    ctl6, parallel = bare_fleet_deploy(6)
    assert ctl1.builder.built == ctl6.builder.built == 0
    print(f"\nfleet deploy to 6 bare hosts: forks=1 {serial:.2f}s, forks=6 {parallel:.2f}s, "
          f"ratio {serial / parallel:.2f}")
    lab.install(installed_fleet, hosts)


def test_unreachable_host_in_a_fleet_exits_4(installed_fleet, lab):
    ctl = installed_fleet
    lab.down([ctl.inventory.host("mon1")])
    proc = inv_cmd(ctl.inventory.path, "status", "--limit", "db:mon1")
    assert proc.returncode == 4
    assert "mon1: cannot reach" in proc.stderr
    assert "db1" in proc.stdout and "unreachable=1" in proc.stdout
    lab.up([ctl.inventory.host("mon1")])
