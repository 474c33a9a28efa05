"""make bench: fruixops against the OpenSSH `tar | ssh` pipeline, on the lab.

Every figure is measured side by side in the same run (alternating runs,
medians) and given as a ratio against its baseline. Prints a table and one
JSON line. Needs root (the lab). Work files go to .bench/ (git-ignored).

    python bench/run.py [--quick]      (--quick: smaller sizes, 1 run each)
"""

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from fruixops.rollout import deploy  # noqa: E402
from fruixops.controller import Controller  # noqa: E402
from fruixops.rollout.events import Events  # noqa: E402
import harness  # noqa: E402
from harness import setup  # noqa: E402
from cold import Cold  # noqa: E402
from upgrades import Upgrades  # noqa: E402
from fleets import Fleets  # noqa: E402
from model import Model  # noqa: E402
from links import Links  # noqa: E402
from ops import Ops  # noqa: E402



class Bench(harness.Harness, Cold, Links, Upgrades, Fleets, Ops, Model):
    """Every figure family over one lab and one set of inventories."""


FAMILIES = {                      # family: (module, the figures it runs, in order)
    "cold": "cold.py and links.py: figures 1, 1b, 3, 4, 1r, 2, 5, 7",
    "upgrades": "upgrades.py: figures 8, 8b",
    "fleet": "fleets.py and ops.py: figures 6, 6c, 6d, 9",
    "model": "model.py: the fleet model's held-out link-bound run (after 6c's calibration)"}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--family", choices=list(FAMILIES), action="append",
                    help="run this family of figures only (repeatable): " + "; ".join(
                        f"{k}: {v}" for k, v in FAMILIES.items()))
    ap.add_argument("--only", choices=["cold", "cold_tmpfs", "cold_real", "upgrades",
                                       "incremental", "fleet_cache", "link", "ops", "model"],
                    help="just figure 1, 1b, 1r, 8, 4, 6c, 2, 9 or the model's hold-out: "
                         "prints its JSON and stops")
    ap.add_argument("--figures", help=argparse.SUPPRESS)     # ops.py alone: --only ops
    args = ap.parse_args(argv)
    if args.figures:
        args.only = args.figures
    if os.geteuid() != 0:
        sys.exit("bench: the lab needs root")
    families = set(args.family or FAMILIES)
    sizes = ({"cold": 64, "mem": 128, "fleet": 16} if args.quick
             else {"cold": 512, "mem": 1024, "fleet": 64})
    runs = 1 if args.quick else 3
    if args.only in ("fleet_cache", "ops", "model") or (args.family and "cold" not in families):
        sizes = {"fleet": sizes["fleet"]}
    elif args.only == "link":
        sizes = {"fleet": sizes["fleet"]}
    elif args.only:
        sizes = {"cold": sizes["cold"]}
    real = not args.quick and (args.only in ("cold_real", "upgrades", "link") or (
        not args.only and families & {"cold", "upgrades"}))
    t_start = time.monotonic()
    inv = setup(sizes, real=real)
    b = Bench(inv, runs)
    b.lab.up(list(b.inv.hosts.values()))
    try:
        if args.only == "incremental":
            b.bare("web2")
            deploy.deploy(Controller(inv), "web2", "cold", events=Events())
            b.incremental("cold")
            print(json.dumps(b.results["incremental"], sort_keys=True))
            return
        if args.only == "fleet_cache":
            b.fleet_cache("fleet")
            print(json.dumps(b.results["fleet_cache"], sort_keys=True))
            return
        if args.only == "upgrades":
            b.upgrades()
            print(json.dumps(b.results["upgrades"], sort_keys=True))
            return
        if args.only in ("link", "ops", "model"):
            {"link": lambda: b.link("real" if real else "fleet"), "ops": lambda: b.ops("fleet"),
             "model": lambda: b.model_holdout("fleet")}[args.only]()
            print(json.dumps(b.results[args.only], sort_keys=True))
            return
        if args.only:
            b.cold(*{"cold": ("cold",), "cold_tmpfs": ("cold", "web1", "cold_tmpfs"),
                     "cold_real": ("real", "web2", "cold_real")}[args.only])
            print(json.dumps(b.results[args.only], sort_keys=True))
            return
        if "cold" in families:
            b.cold("cold")
            b.cold("cold", "web1", "cold_tmpfs")
            b.noop("cold")                  # these two need web2 as figure 1 left it
            b.incremental("cold")
            if real:
                b.cold("real", "web2", "cold_real")
            b.link("real" if real else "fleet")
        if real and "upgrades" in families:
            b.upgrades()
        if "cold" in families:
            b.memory(["fleet", "mem"])
        if "fleet" in families:
            b.fleet("fleet")
            b.fleet_cache("fleet")
            b.ops("fleet")
        if "model" in families:
            b.model_holdout("fleet")
        if "cold" in families:
            b.build("mem")
    finally:
        b.lab.down(list(b.inv.hosts.values()))
    report(b, runs, t_start)


def report(b, runs, t_start):
    """The table of every figure measured, then one JSON line."""
    r = b.results
    r["meta"] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, "
                 f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                 f"{socket.gethostname()}", "runs": runs, "seconds": time.monotonic() - t_start}
    c, ct, lk, n, inc, mem, fl, bd, fc = (r.get(k) for k in (
        "cold", "cold_tmpfs", "link", "noop", "incremental", "memory", "fleet", "build",
        "fleet_cache"))

    def cold_row(c):
        return (f"{c['bytes'] / 2**20:.0f} MiB, {c['files']} files, /frx on {c['frx']}: fruixops "
                f"{c['fruixops_s']:.2f}s ({c['fruixops_MBps']:.0f} MB/s), tar|ssh "
                f"{c['baseline_s']:.2f}s ({c['baseline_MBps']:.0f} MB/s), tar|ssh + sync -f "
                f"{c['durable_baseline_s']:.2f}s")
    figures = [            # (result key, lambda: the rows of that figure)
        ("cold", lambda: [("1 cold deploy", cold_row(c), f"{c['ratio']:.2f} (goal >= 1.1); "
                                                         f"{c['ratio_durable']:.2f} vs + sync")]),
        ("cold_tmpfs", lambda: [("1b the same to tmpfs", cold_row(ct), f"{ct['ratio']:.2f}; "
                                 f"{ct['ratio_durable']:.2f} vs + sync")]),
        ("cold_real", lambda: [("1r real binaries", cold_row(r["cold_real"]),
                                f"{r['cold_real']['ratio']:.2f}; "
                                f"{r['cold_real']['ratio_durable']:.2f} vs + sync (goal >= 1.0)")]),
        ("link", lambda: [link_row(v) for v in lk.values()]),
        ("upgrades", lambda: [
           ("8 upgrade, same source", f"{r['upgrades']['real-p1']['bytes_sent']} B sent of "
            f"{r['upgrades']['first_bytes']} B for the first deploy; "
            f"{r['upgrades']['real-p1']['reused_files']} files reused; planned "
            f"{r['upgrades']['real-p1']['planned_bytes']} B",
            f"{r['upgrades']['real-p1']['ratio_first']:.4f} (goal <= 0.02)"),
           ("8 its time", f"{r['upgrades']['real-p1']['seconds']:.2f}s; 1% changed "
            f"{r['upgrades']['real-1pct']['seconds']:.2f}s; cold deploy of the same tree "
            f"{r['upgrades']['cold_s']:.2f}s",
            f"{r['upgrades']['real-p1']['ratio_time']:.2f} of cold (goal <= 0.3); "
            f"{r['upgrades']['real-1pct']['ratio_time']:.2f}"),
           ("8b upgrade, 1% changed", f"{r['upgrades']['real-1pct']['changed_files']} files "
            f"changed ({r['upgrades']['real-1pct']['changed_zstd_bytes']} B zstd -3) + listings "
            f"{r['upgrades']['real-1pct']['listings_bytes']} B + manifest: sent "
            f"{r['upgrades']['real-1pct']['bytes_sent']} B in "
            f"{r['upgrades']['real-1pct']['seconds']:.1f}s; planned "
            f"{r['upgrades']['real-1pct']['planned_bytes']} B",
            f"{r['upgrades']['real-1pct']['ratio']:.3f} (goal <= 1.1)")]),
        ("noop", lambda: [("3 no-op redeploy", f"{n['fruixops_s'] * 1000:.0f} ms, "
         f"{n['connections']} connection, {n['round_trips']} round trip(s), 0 item bytes; "
         f"ssh true {n['ssh_true_s'] * 1000:.0f} ms", f"{n['ratio']:.2f} of ssh true")]),
        ("incremental", lambda: [("4 incremental", f"{inc['items_sent']} item ({inc['item']}, "
         f"{inc['item_bytes']} B) + manifest {inc['manifest_bytes']} B: sent {inc['bytes_sent']} "
         f"B (zstd), {inc['uncompressed']['bytes_sent']} B (none, ratio "
         f"{inc['uncompressed']['ratio']:.4f})", f"{inc['ratio']:.4f} (goal <= 1.01)")]),
        ("memory", lambda: [("5 controller memory", ", ".join(
            f"{v['closure_bytes'] / 2**20:.0f} MiB closure: peak RSS "
            f"{v['peak_rss_MiB']:.0f} MiB" for v in mem.values()), "goal <= 150 MiB, flat")]),
        ("fleet", lambda: [("6 fleet (6 hosts)", f"forks=6 {fl['forks6_s']:.2f}s, forks=1 "
                            f"{fl['forks1_s']:.2f}s", f"{fl['ratio']:.2f}x")]),
        ("fleet_cache", lambda: [
         ("6c fleet via cache", f"{fc['hosts']} hosts, forks 6: push {fc['push']['fleet_s']:.2f}s, "
         f"{fc['push']['controller_bytes'] / 2**20:.1f} MiB over SSH; pull "
         f"{fc['pull']['fleet_s']:.2f}s, {fc['pull']['controller_bytes'] / 1024:.1f} KiB over "
         f"SSH + {fc['pull']['fetched_bytes'] / 2**20:.1f} MiB from nginx",
         f"egress {fc['egress_ratio']:.0f}x less; time {fc['time_ratio']:.2f}x"),
         ("6d fleet upgrade", f"{fc['hosts']} hosts, same tree, new label: push "
         f"{fc['upgrade']['push']['fleet_s']:.2f}s, "
         f"{fc['upgrade']['push']['controller_bytes'] / 1024:.0f} KiB over SSH; pull "
         f"{fc['upgrade']['pull']['fleet_s']:.2f}s, "
         f"{fc['upgrade']['pull']['controller_bytes'] / 1024:.1f} KiB over SSH + "
         f"{fc['upgrade']['pull']['uploaded_bytes'] / 1024:.0f} KiB uploaded once",
         f"egress {fc['upgrade']['push']['controller_bytes'] / fc['upgrade']['pull']['controller_bytes']:.0f}x less")]),
        ("ops", lambda: ops_rows(r["ops"])),
        ("model", lambda: model_rows(r["model"])),
        ("build", lambda: [("7 build", f"hash {bd['bytes'] / 2**20:.0f} MiB: {bd['hash_s']:.2f}s "
         f"vs sha256sum {bd['sha256sum_s']:.2f}s; cache-hit rebuild "
         f"{bd['cache_hit_rebuild_s'] * 1000:.0f} ms", f"{bd['ratio']:.2f} (goal >= 0.8)")]),
    ]
    rows = [row for key, make in figures if key in r for row in make()]
    print(f"fruixops bench {r['meta']['date']} on {r['meta']['machine']}, "
          f"{runs} runs each ({b.cold_runs} for figure 1; medians), {r['meta']['seconds']:.0f}s")
    for name, what, ratio in rows:
        print(f"{name:22} {ratio:26} {what}")
    print(json.dumps(r, sort_keys=True))


def link_row(lk):
    goal = f" (goal >= {lk['goal_zstd']}x" + (f"; <= {lk['goal_wire']} of the wire)"
                                               if lk["goal_wire"] else ")")
    return (f"2 link {lk['mbit']:.0f}/{lk['delay_ms']:.0f}",
            f"kernel-shaped {lk['mbit']:.0f} Mbit/s, {lk['delay_ms']:.0f} ms each way (iperf3 "
            f"{lk['iperf']['down']['mbit'] or 0:.0f}/{lk['iperf']['up']['mbit'] or 0:.0f} Mbit/s), "
            f"{lk['bytes'] / 2**20:.0f} MiB ({lk['bytes_sent'] / 2**20:.1f} MiB sent, wire limit "
            f"{lk['wire_s']:.2f}s): fruixops {lk['fruixops_s']:.2f}s, tar|ssh "
            f"{lk['baseline_s']:.2f}s, tar|zstd -3|ssh {lk['zstd_baseline_s']:.2f}s",
            f"{lk['ratio']:.2f}x; {lk['ratio_zstd']:.2f}x vs zstd; {lk['of_wire']:.2f} of wire"
            + goal)


def ops_rows(o):
    def what(ours, theirs):
        return (f"{o['hosts']} hosts, forks {o['forks']}: {ours} {o[ours]['wall_s']:.2f}s "
                f"({o[ours]['cpu_s_per_host']:.3f} CPU s/host), ansible {theirs} "
                f"{o[theirs]['wall_s']:.2f}s ({o[theirs]['cpu_s_per_host']:.3f} CPU s/host)")
    return [("9 status vs ping", what("status", "ping"),
             f"{o['status_ratio']:.2f}x (goal >= 2x)"),
            ("9b no-op vs command", what("noop_deploy", "command_true"),
             f"{o['deploy_ratio']:.2f}x (goal >= 2x)")]


def model_rows(m):
    return [(f"M model {mode}", f"{m['hosts']} hosts held out, links {m['host_link']}, uplink "
             f"{m['uplink_mbit']} Mbit/s, cache {m['cache_mbit']} Mbit/s: measured "
             f"{m[mode]['measured_s']:.2f}s, model {m[mode]['model_s']:.2f}s ({m[mode]['bound']})",
             f"{m[mode]['error_pct']:+.1f}% (goal within 10%)") for mode in ("push", "pull")]


if __name__ == "__main__":
    main()
