"""Differential tests: ansible-core is the oracle of what an inventory holds,
what a pattern selects and how a host is reached (address, port, user, key,
privilege escalation, with templated values rendered). Random inventories
(tests/inventory_gen.py) and patterns are put to both; every answer must
match, except the documented refusals (see fruixops/inventory/limit.py), which
ansible-core itself flags: with HOST_PATTERN_MISMATCH=error it refuses
exactly the terms that name nothing, and `ao.refused_by_fruixops`."""

import os
import pwd
import random
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ansible_oracle as ao
import inventory_gen

EXAMPLES = 200
os.environ[inventory_gen.LOOKUP_ENV[0]] = inventory_gen.LOOKUP_ENV[1]


def run_case(case):
    root = tempfile.mkdtemp(prefix="fruixops-diff-")
    sources = inventory_gen.write(case, root)
    oracle = ao.Oracle(sources)
    inv = ao.load_fruixops(sources)
    assert list(inv.hosts) == oracle.hosts, "hosts, in inventory order"
    for name, group in oracle.im.groups.items():
        assert inv.groups[name] == {h.name for h in group.get_hosts()}, f"members of {name}"
    bad_vars = ao.compare_vars(inv, oracle) + ao.compare_reach(inv, oracle, f"{root}/inv")
    undetermined = oracle.undetermined_groups()
    bad, as_sets, skipped = ao.compare_patterns(inv, oracle, case.patterns, undetermined)
    for name in case.limit_files:
        pattern = f"@{root}/{name}"
        want, got = oracle.limit(pattern), ao.fruixops_select(inv, pattern)
        if sorted(want) != sorted(got):
            bad.append((pattern, want, got))
    return bad_vars, bad, as_sets, skipped


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_random_inventories_and_patterns_match_ansible(seed):
    case = inventory_gen.make_case(random.Random(seed))
    bad_vars, bad_patterns, _, _ = run_case(case)
    assert not bad_vars, f"seed {seed}: {case.files}\n{bad_vars[:2]}"
    assert not bad_patterns, f"seed {seed}: {case.files}\n{bad_patterns[:3]}"


# -- how a host is reached: the cases of issue 24 --------------------------------

def _reach_both(tmp_path, files, names):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    sources = [tmp_path / "hosts.yaml"]
    oracle, inv = ao.Oracle(sources), ao.load_fruixops(sources)
    answers = {n: (oracle.reach(n, tmp_path), ao.fruixops_reach(inv, n)) for n in names}
    for name, (want, got) in answers.items():
        assert ao.canon(got) == ao.canon(want), name
    return {n: got for n, (_, got) in answers.items()}


def test_both_spellings_reach_the_address_user_and_port_ansible_uses(tmp_path):
    """ansible_ssh_host beats ansible_host (and _ssh_user, _ssh_port,
    _ssh_private_key_file theirs) whatever layer either comes from; a
    spelling that is null, or renders null, is passed over."""
    got = _reach_both(tmp_path, {
        "hosts.yaml": """\
all:
  vars: {ansible_ssh_user: ops, ansible_ssh_port: 2201}
  hosts:
    h1: {ansible_host: 192.0.2.1, ansible_ssh_host: 192.0.2.2, ansible_user: admin,
         ansible_port: 2222, ansible_private_key_file: /k/a, ansible_ssh_private_key_file: /k/b}
    h2: {ansible_ssh_host: "{{ none }}", ansible_host: 192.0.2.3, ansible_ssh_user: ~}
""",
        "host_vars/h1.yml": "ansible_host: 192.0.2.9\nansible_user: later\n"}, ["h1", "h2"])
    assert (got["h1"]["host"], got["h1"]["user"], got["h1"]["port"], got["h1"]["key"]) == \
        ("192.0.2.2", "ops", 2201, "/k/b")
    assert (got["h2"]["host"], got["h2"]["user"]) == ("192.0.2.3", None)


def test_templated_user_and_become_are_rendered(tmp_path):
    got = _reach_both(tmp_path, {"hosts.yaml": """\
all:
  hosts:
    h1:
      ansible_user: "{{ lookup('pipe', 'whoami') }}"
      ansible_become: "{{ 'true' | trim }}"
    h2: {ansible_become: "yes", ansible_become_user: "{{ 'root' }}", ansible_host: "{{ inventory_hostname }}.example"}
"""}, ["h1", "h2"])
    assert got["h1"]["user"] == pwd.getpwuid(os.geteuid()).pw_name and got["h1"]["become_method"] == "sudo"
    assert got["h2"]["become"] and got["h2"]["host"] == "h2.example"


def test_a_templated_port_on_one_host_of_729_loads_the_inventory_whole(tmp_path):
    got = _reach_both(tmp_path, {
        "hosts.yaml": "web:\n  hosts:\n    w[001:729]:\n",
        "host_vars/w042.yml": 'ansible_port: "{{ 22 | int }}"\n'}, ["w042", "w729"])
    assert got["w042"]["port"] == 22 and got["w729"]["port"] is None
    assert len(ao.load_fruixops([tmp_path / "hosts.yaml"]).hosts) == 729
