"""Playbook loading and batching (no hosts needed)."""

import re

import pytest

from conftest import ROOT
from fruixops.inventory import model as inventory
from fruixops.rollout import playbook
from fruixops.errors import UserError


@pytest.fixture(scope="module")
def inv():
    return inventory.load(ROOT / "inventories/lab.yaml")


def load(tmp_path, inv, text):
    p = tmp_path / "book.yaml"
    p.write_text(text)
    return playbook.load(p, inv)


def test_shipped_playbooks_load(inv):
    canary = playbook.load(ROOT / "playbooks/canary.yaml", inv)
    assert canary.stages[0].trial and canary.stages[0].host_names == ["web1"]
    assert canary.stages[1].host_names == ["web2", "web3"]
    assert all(s.checks for s in canary.stages)
    back = playbook.load(ROOT / "playbooks/rollback-fleet.yaml", inv)
    assert {s.action for s in back.stages} == {"rollback"}


def test_batches_follow_serial(inv, tmp_path):
    book = load(tmp_path, inv, """
stages:
  - {hosts: all, serial: [1, "25%", 2]}
  - {hosts: all, serial: "50%"}
  - {hosts: all}
""")
    hosts = list("abcdefg")
    assert book.stages[0].batches(hosts) == [["a"], ["b"], ["c", "d"], ["e", "f"], ["g"]]
    assert book.stages[1].batches(hosts) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert book.stages[2].batches(hosts) == [hosts]


@pytest.mark.parametrize("text, pattern", [
    ("stages:\n  - {hosts: nosuchgroup}\n", r"book\.yaml:2:\d+: .*no host or group named"),
    ("stages:\n  - {hosts: web, colour: red}\n", r"book\.yaml:2:\d+: unknown field 'colour'"),
    ("stages:\n  - {hosts: web, serial: 0}\n", r"serial value 0"),
    ("stages:\n  - {hosts: web, serial: '150%'}\n", r"serial value"),
    ("stages:\n  - {hosts: web, base: nope}\n", r"unknown base 'nope'"),
    ("stages:\n  - {hosts: web, pause: soon}\n", r"pause must be"),
    ("stages:\n  - {hosts: web, max_fail_percentage: 120}\n", r"from 0 to 100"),
    ("stages:\n  - hosts: web\n    checks: [{name: x}]\n", r"lacks required field 'command'"),
    ("stages:\n  - hosts: web\n    checks: [{name: x, command: y, expect_output: '('}]\n",
     r"bad regular expression"),
    ("stages:\n  - {hosts: web, reboot: yes please}\n", r"must be true or false"),
    # A rollback runs the checks signed with the generation it returns to.
    ("stages:\n  - hosts: web\n    action: rollback\n    checks: [{name: x, command: y}]\n",
     r"book\.yaml:4:\d+: a rollback stage runs the checks signed with the generation"),
    ("stages: []\n", r"stages is empty"),
    ("name: x\n", r"lacks required field 'stages'"),
    ("stages:\n  - {hosts: web}\nstages: []\n", r"duplicate key"),
])
def test_bad_playbooks_are_one_line_errors(inv, tmp_path, text, pattern):
    with pytest.raises(UserError) as e:
        load(tmp_path, inv, text)
    assert "\n" not in str(e.value)
    assert re.search(pattern, str(e.value)), str(e.value)


def test_cli_reports_playbook_errors_with_location(project, tmp_path):
    from conftest import inv_cmd
    p = tmp_path / "bad.yaml"
    p.write_text("stages:\n  - {hosts: 'web:&nosuch'}\n")
    proc = inv_cmd(project, "play", str(p))
    assert proc.returncode == 2
    assert re.match(r"fruixops: .*bad\.yaml:2:\d+: host pattern 'web:&nosuch'", proc.stderr)
