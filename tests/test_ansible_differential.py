"""Differential tests: ansible-core is the oracle of what an inventory holds
and what a pattern selects. Random inventories (tests/inventory_gen.py) and
patterns are put to both; every answer must match, except the documented
refusals (see fruixops/limit.py), which ansible-core itself flags: with
HOST_PATTERN_MISMATCH=error it refuses exactly the terms that name nothing."""

import random
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ansible_oracle as ao
import inventory_gen

EXAMPLES = 200


def run_case(case):
    root = tempfile.mkdtemp(prefix="fruixops-diff-")
    sources = inventory_gen.write(case, root)
    oracle = ao.Oracle(sources)
    inv = ao.load_fruixops(sources)
    assert list(inv.hosts) == oracle.hosts, "hosts, in inventory order"
    for name, group in oracle.im.groups.items():
        assert inv.groups[name] == {h.name for h in group.get_hosts()}, f"members of {name}"
    bad_vars = ao.compare_vars(inv, oracle)
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
