"""Measure how often fruixops and ansible-core disagree on random inventories
(not a test: `python tests/measure_differential.py [N] [--legacy]`).

Run with PYTHONPATH pointing at another checkout to measure that code; with
--legacy, only inventories the old loader could read are drawn."""

import os
import random
import sys
import tempfile
import time

import ansible_oracle as ao
import inventory_gen
import fruixops
from fruixops.inventory import model as inventory_mod


def load(sources):
    try:
        return inventory_mod.load([str(s) for s in sources], warn=lambda line: None)
    except TypeError:                       # the old loader: one file, no warn
        return inventory_mod.load(str(sources[0]))


def main(n, legacy):
    counts = dict(inventories=0, refused_inventories=0, patterns=0, patterns_differ=0,
                  hosts=0, hosts_vars_differ=0, hosts_reach_differ=0, order_as_sets=0,
                  order_skipped=0)
    os.environ[inventory_gen.LOOKUP_ENV[0]] = inventory_gen.LOOKUP_ENV[1]
    start = time.time()
    for seed in range(n):
        case = inventory_gen.make_case(random.Random(seed), legacy=legacy)
        root = tempfile.mkdtemp(prefix="fruixops-measure-")
        sources = inventory_gen.write(case, root)
        oracle = ao.Oracle(sources)
        counts["inventories"] += 1
        counts["patterns"] += len(case.patterns)
        counts["hosts"] += len(oracle.hosts)
        try:
            inv = load(sources)
        except Exception:
            counts["refused_inventories"] += 1
            counts["patterns_differ"] += len(case.patterns)
            counts["hosts_vars_differ"] += len(oracle.hosts)
            counts["hosts_reach_differ"] += len(oracle.hosts)
            continue
        if not hasattr(inv, "tree"):
            for h in inv.hosts.values():
                h.ansible_vars = h.vars
        try:
            bad, as_sets, skipped = ao.compare_patterns(inv, oracle, case.patterns,
                                                        oracle.undetermined_groups())
        except Exception:
            bad, as_sets, skipped = case.patterns, 0, 0
        counts["patterns_differ"] += len(bad)
        if bad and "-v" in sys.argv:
            print(seed, bad[:2], case.files)
        counts["order_as_sets"] += as_sets
        counts["order_skipped"] += skipped
        counts["hosts_vars_differ"] += len(ao.compare_vars(inv, oracle))
        try:
            counts["hosts_reach_differ"] += len(ao.compare_reach(inv, oracle, f"{root}/inv"))
        except Exception:                   # code without access.become
            counts["hosts_reach_differ"] += len(oracle.hosts)
    counts["seconds"] = round(time.time() - start, 1)
    print(fruixops.__file__, "legacy" if legacy else "full", counts)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 200, "--legacy" in sys.argv)
