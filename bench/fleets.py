"""Figures 6, 6c, 6d and 9: fleets of lab hosts -- forks, push against
pull through the lab's nginx (the fleet model's calibration), and fleet
operations against Ansible (ops.py).

    python bench/fleets.py [--quick]    (this family alone)
"""

import json
import os
import socket
import sys
import time

from harness import BENCH, ROOT, log, median, _cpu_s
from fruixops.rollout import cache
from fruixops.rollout import fleet
from fruixops.controller import Controller
from fruixops.rollout.events import Events
from fruixops.lab import Lab
from fruixops.lab.webcache import WebCache

class Fleets:
    # 6. fleet ---------------------------------------------------------------------------
    def fleet(self, base):
        hosts = list(self.inv.hosts.values())
        Controller(self.inv_path).build(base)
        times = {1: [], 6: []}
        for i in range(self.runs):
            for forks in (6, 1):
                self.bare(*[h.name for h in hosts])
                ctl = Controller(self.inv_path)
                t0 = time.monotonic()
                outcomes, _ = fleet.deploy_many(ctl, hosts, base, forks=forks, events=Events())
                times[forks].append(time.monotonic() - t0)
                assert outcomes.exit_status() == 0
                log(f"fleet run {i + 1} forks={forks}: {times[forks][-1]:.2f}s")
        self.bare(*[h.name for h in hosts])
        self.results["fleet"] = {"hosts": len(hosts), "forks6_s": median(times[6]),
                                 "forks1_s": median(times[1]),
                                 "ratio": median(times[1]) / median(times[6])}

    # 6c. the fleet through the cache ----------------------------------------------------
    def fleet_cache(self, base):
        """Six cold hosts at once (forks 6), every item pushed over SSH, then
        pulled from the lab's nginx; and one host alone each way (the fleet
        model's calibration). Controller bytes: what went over SSH."""
        cached = BENCH / "inventories/bench-cache.yaml"
        ctl = Controller(cached)
        web = WebCache.of(Lab(ctl.inventory))
        web.up()
        try:
            hosts = list(ctl.inventory.hosts.values())
            t0 = time.monotonic()
            up = cache.push(ctl.builder.store, cache.closure_items(ctl, hosts, base),
                            cache.target_for(ctl.inventory.settings.cache))
            upload_s = time.monotonic() - t0
            runs = {"push": [], "pull": [], "push1": [], "pull1": []}
            cpu = {k: [] for k in runs}      # the controller's CPU seconds (all its threads)
            runs.update(push3=[], pull3=[])
            cpu.update(push3=[], pull3=[])
            # The model is fitted to 6 hosts at once and one alone; 6 hosts
            # three at a time (two waves) is held out, to check it.
            for i in range(self.runs):
                for mode in ("push", "pull"):
                    for key, group, forks in ((mode, hosts, 6), (mode + "1", [self.host("web2")], 6),
                                              (mode + "3", hosts, 3)):
                        self.bare(*[h.name for h in group])
                        c = Controller(cached)
                        cpu0 = _cpu_s()
                        t0 = time.monotonic()
                        outcomes, _ = fleet.deploy_many(c, group, base, forks=forks,
                                                        events=Events(), use_cache=mode == "pull")
                        took = time.monotonic() - t0
                        cpu[key].append(_cpu_s() - cpu0)
                        assert outcomes.exit_status() == 0, {h: o.messages for h, o in outcomes.items()}
                        res = [o.results[0] for o in outcomes.values()]
                        assert all(r["pulled"] == (r["items_sent"] if mode == "pull" else 0)
                                   for r in res)
                        runs[key].append((took, sum(r["bytes_sent"] for r in res),
                                          sum(r["bytes_fetched"] for r in res)))
                        log(f"fleet {key} run {i + 1}: {took:.2f}s, "
                            f"{runs[key][-1][1]} B over SSH, {runs[key][-1][2]} B fetched")
            # The fleet upgraded to the same tree under another label: the
            # hosts hold every file; listings and deltas, pushed or pulled.
            up_runs = {"push": [], "pull": []}
            cache.push(ctl.builder.store, cache.closure_items(ctl, hosts, base + "-p1"),
                       cache.target_for(ctl.inventory.settings.cache))
            for i in range(self.runs):
                for mode in ("push", "pull"):
                    self.bare(*[h.name for h in hosts])
                    c = Controller(cached)
                    assert fleet.deploy_many(c, hosts, base, forks=6,
                                             events=Events())[0].exit_status() == 0
                    t0 = time.monotonic()
                    outcomes, _ = fleet.deploy_many(c, hosts, base + "-p1", forks=6,
                                                    events=Events(), use_cache=mode == "pull")
                    took = time.monotonic() - t0
                    assert outcomes.exit_status() == 0, [o.messages for o in outcomes.values()]
                    res = [o.results[0] for o in outcomes.values()]
                    assert all(r["deltas"] > 0 for r in res)
                    up_runs[mode].append((took, sum(r["bytes_sent"] for r in res),
                                          sum(r["bytes_fetched"] for r in res),
                                          sum(r["cache_uploaded"] for r in res)))
                    log(f"fleet upgrade {mode} run {i + 1}: {took:.2f}s, "
                        f"{up_runs[mode][-1][1]} B over SSH, {up_runs[mode][-1][2]} B fetched, "
                        f"{up_runs[mode][-1][3]} B uploaded")
        finally:
            web.down()
        self.bare(*[h.name for h in hosts])

        def med(key, col):
            return median([r[col] for r in runs[key]])
        out = {"hosts": len(hosts), "forks": 6, "base": base,
               "upload": {"objects": up.uploaded, "bytes": up.uploaded_bytes, "seconds": upload_s},
               "bytes_per_host": med("push", 1) / len(hosts)}
        for mode in ("push", "pull"):
            out[mode] = {"fleet_s": med(mode, 0), "one_host_s": med(mode + "1", 0),
                         "controller_bytes": med(mode, 1), "fetched_bytes": med(mode, 2),
                         "controller_cpu_s": median(cpu[mode])}
        out["upgrade"] = {mode: {"fleet_s": median([r[0] for r in up_runs[mode]]),
                                 "controller_bytes": median([r[1] for r in up_runs[mode]]),
                                 "fetched_bytes": median([r[2] for r in up_runs[mode]]),
                                 "uploaded_bytes": max(r[3] for r in up_runs[mode])}
                          for mode in up_runs}
        out["holdout"] = {"hosts": len(hosts), "forks": 3, "push_s": med("push3", 0),
                          "pull_s": med("pull3", 0)}
        out["egress_ratio"] = out["push"]["controller_bytes"] / out["pull"]["controller_bytes"]
        out["time_ratio"] = out["push"]["fleet_s"] / out["pull"]["fleet_s"]
        self.results["fleet_cache"] = out
        write_calibration(out)


def write_calibration(fc):
    """bench/fleet-calibration.json, which bench/fleet_model.py reads: the
    measured 6-host figure; then the model's table and plot are made again."""
    cal = {"measured": f"make bench figure 6c, {time.strftime('%Y-%m-%d')}, "
                       f"{socket.gethostname()}, {fc['base']} base",
           "hosts": fc["hosts"], "forks": fc["forks"], "controller_cores": os.cpu_count(),
           "bytes_per_host": round(fc["bytes_per_host"]),
           "push": {k: fc["push"][k] for k in ("one_host_s", "fleet_s", "controller_bytes")},
           "pull": {k: fc["pull"][k] for k in ("one_host_s", "fleet_s", "controller_bytes",
                                               "fetched_bytes", "controller_cpu_s")},
           "holdout": fc["holdout"]}
    # The link-bound hold-out (bench/model.py) is a measurement of its own:
    # kept, and checked again against the new fit.
    old = ROOT / "bench/fleet-calibration.json"
    if old.exists() and "holdout_link" in json.loads(old.read_text()):
        cal["holdout_link"] = json.loads(old.read_text())["holdout_link"]
    (ROOT / "bench/fleet-calibration.json").write_text(json.dumps(cal, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    import fleet_model
    log(fleet_model.write_outputs(cal, doc=ROOT / "docs/fleet-scale.md"))
    write_readme_fleet(fc, fleet_model.calibrate(cal), fleet_model)


def write_readme_fleet(fc, p, fm):
    """The README's fleet-scale paragraph and table, between its markers:
    figure 6c as measured, and the model for 10 to 10,000 hosts."""
    push, pull = fc["push"], fc["pull"]
    stops = {m: fm.stop_scaling(m, p) for m in ("push", "pull")}
    at = {m: f"from {s[0]:,} hosts on ({s[1]})" if s else "never before forks do"
          for m, s in stops.items()}
    k = {m: fm.simulate(m, 1000, p) for m in ("push", "pull")}
    lines = [
        f"On the lab (nginx, figure 6c, {time.strftime('%Y-%m-%d')}): {fc['hosts']} cold hosts "
        f"sent the controller {pull['controller_bytes'] / 1024:.0f} KiB over SSH instead of "
        f"{push['controller_bytes'] / 2**20:.0f} MiB ({fc['egress_ratio']:,.0f}x less), in "
        f"{pull['fleet_s']:.2f} s instead of {push['fleet_s']:.2f} s on 2 shared cores; "
        f"upgraded, {fc['upgrade']['pull']['controller_bytes'] / 1024:.0f} KiB instead of "
        f"{fc['upgrade']['push']['controller_bytes'] / 1024:.0f} KiB. A model calibrated on "
        "that run ([docs/fleet-scale.md](docs/fleet-scale.md), with its plot) says where each "
        f"way stops scaling. With the defaults (700 MiB per host, 1 Gbit/s links, a 10 Gbit/s "
        f"cache, 50 forks), push is bound {at['push']} and 1,000 hosts take "
        f"{fm._time(k['push'].seconds)}; pull is bound {at['pull']} and takes "
        f"{fm._time(k['pull'].seconds)}. The model's table (regenerated by `make bench`):"]
    import textwrap
    lines = textwrap.wrap(" ".join(lines), 78, break_on_hyphens=False) + [
        "",
        "| hosts | push: controller egress | push: time | pull: controller egress | pull: time |",
        "|---|---|---|---|---|"]
    for n in (10, 100, 1_000, 10_000):
        r = {m: fm.simulate(m, n, p) for m in ("push", "pull")}
        lines.append(f"| {n:,} | " + " | ".join(
            f"{fm._bytes(r[m].egress_bytes)} | {fm._time(r[m].seconds)} ({r[m].bottleneck})"
            for m in ("push", "pull")) + " |")
    readme = ROOT / "README.md"
    begin, end = "<!-- fleet-readme:begin -->", "<!-- fleet-readme:end -->"
    head, rest = readme.read_text().split(begin, 1)
    readme.write_text(f"{head}{begin}\n" + "\n".join(lines) + f"\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    import run
    run.main(["--family", "fleet", *sys.argv[1:]])
