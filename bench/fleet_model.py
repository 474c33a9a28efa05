"""Fleet-scale rollout model: push against pull, 1 to 10,000 hosts (issue 16).

    python bench/fleet_model.py [--out PNG] [--markdown] [--doc MD] [--forks 50 ...]

Why waves and not events: hosts are identical and shared resources are
shared fairly, so hosts that start together get the same share and finish
together; within a batch the fleet goes in waves of at most `forks` hosts. A
discrete-event simulation would only replay those waves, so each wave is
computed in closed form. Staggered starts would overlap one host's fixed
phase with another's transfer; the model does not (slightly pessimistic).

A wave of c hosts takes the longer of its time and its CPU:
    time     = per-host fixed time + transfer
    transfer = max(bytes in / host downlink, bytes / unpack rate,
                   SSH bytes / push rate         (one stream runs on one core),
                   c * SSH bytes / controller uplink, c * cache bytes / cache)
    CPU      = c * (CPU per host + SSH bytes / push rate) / cores
(a host's rate is the min of these rates), except that a pulled object is
fetched whole and hashed before it is unpacked: for pull, the cache's (or
the host downlink's) term is the fetch plus the unpack. The CPU is one pool:
a host's fixed CPU runs while others' bytes are on the links. (Until
2026-12-08 the fixed CPU was a phase before the transfer; the link-bound
hold-out showed that wrong by a third: docs/fleet-scale.md.) The bottleneck is the largest
term of the longer phase. Push sends bytes + control over SSH; pull sends
control over SSH, the bytes come from the cache (its one upload is not
counted). Calibration on the lab: see _fits(); docs/fleet-scale.md says more.
"""

import argparse
import json
import math
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = ROOT / "bench" / "fleet-calibration.json"
MIB = 1 << 20
GBIT = 1e9 / 8                      # bytes per second in one Gbit/s
TABLE_N = (1, 6, 10, 100, 1_000, 10_000)
SHARED = ("controller uplink", "controller CPU", "cache", "shared CPU")
BEGIN, END = "<!-- fleet-model:begin -->", "<!-- fleet-model:end -->"


@dataclass(frozen=True)
class Params:
    """One rollout's parameters. Bytes, bytes/s, seconds, core-seconds."""
    bytes_per_host: float = 700 * MIB
    control_bytes: float = 20e3     # manifest and control traffic per host (SSH)
    uplink: float = 1 * GBIT        # the controller's uplink
    cache: float = 10 * GBIT        # the cache's bandwidth
    downlink: float = 1 * GBIT      # each host's downlink
    forks: int = 50                 # hosts in flight at once
    batch: int | None = None        # rolling batch size; None: the whole fleet
    controller_cores: int = 8       # controller cores
    push_rate: float = 100e6        # SSH bytes one controller core sends per second
    cpu_per_host: float = 0.2       # controller CPU per host (lab: and the host's)
    unpack_rate: float = 250e6      # bytes a host unpacks and verifies per second
    fixed: float = 1.0              # per-host fixed time (connect, plan, commit, switch)
    shared_cpu: bool = False        # lab: hosts' CPU on the controller's cores


@dataclass(frozen=True)
class Result:
    """One rollout: what the controller sent, how long, what bounded it."""
    egress_bytes: float             # controller -> hosts over SSH
    seconds: float
    bottleneck: str


def _flows(mode, p):
    """Bytes per host sent by the controller (SSH) and fetched from the cache;
    a KeyError for a mode other than "push" and "pull"."""
    return {"push": (p.bytes_per_host + p.control_bytes, 0.0),
            "pull": (p.control_bytes, p.bytes_per_host)}[mode]


def _largest(terms):
    """(seconds, label) of the largest term; on a tie the first one listed."""
    label = max(terms, key=terms.get)
    return terms[label], label


def wave(mode, c, p):
    """(seconds, bottleneck) of c hosts that go together."""
    ssh, cached = _flows(mode, p)
    cpu = "shared CPU" if p.shared_cpu else "controller CPU"
    host_cpu = p.bytes_per_host / p.unpack_rate if p.shared_cpu else 0.0
    transfer = {"host downlink": (ssh + cached) / p.downlink,
                "host unpack": p.bytes_per_host / p.unpack_rate,
                "SSH stream (1 core)": ssh / p.push_rate,
                "controller uplink": c * ssh / p.uplink,
                "cache": c * cached / p.cache}
    fetch = {"host downlink": cached / p.downlink, "cache": c * cached / p.cache}
    if max(fetch.values()) > 0:
        # A pulled object is fetched whole and hashed before tar reads it
        # (host/cache.sh): its fetch and its unpack add up; a pushed stream
        # is unpacked as it arrives (the max above).
        t, label = _largest(fetch)
        transfer[label] = t + p.bytes_per_host / p.unpack_rate
    # The CPU is one pool for the whole wave: the hosts' fixed CPU (connect,
    # plan, commit) runs while other hosts' bytes are on the links, so it
    # adds to the CPU the bytes cost, not to the links' time.
    cpu_s = c * (p.cpu_per_host + ssh / p.push_rate + host_cpu) / p.controller_cores
    tt, lt = _largest(transfer)
    if cpu_s > p.fixed + tt:
        return cpu_s, cpu
    return p.fixed + tt, ("per-host fixed time" if p.fixed > tt else lt)


def _batch_seconds(mode, size, p):
    """Time of one batch of *size* hosts, at most p.forks at once."""
    width = min(p.forks, size)
    full, rest = divmod(size, width)
    return full * wave(mode, width, p)[0] + (wave(mode, rest, p)[0] if rest else 0.0)


def simulate(mode, n, p):
    """Roll a closure out to n hosts ("push" or "pull"): the controller's
    egress, the rollout's seconds and what bounds its widest wave."""
    if n < 1 or p.forks < 1 or (p.batch is not None and p.batch < 1):
        raise ValueError("n, forks and batch must be at least 1")
    size = min(p.batch or n, n)
    full, rest = divmod(n, size)
    seconds = full * _batch_seconds(mode, size, p)
    seconds += _batch_seconds(mode, rest, p) if rest else 0.0
    return Result(n * _flows(mode, p)[0], seconds, wave(mode, min(p.forks, size), p)[1])


def stop_scaling(mode, p, limit=10_000):
    """(n, resource): the smallest fleet whose waves are bound by a shared
    resource, from where time grows linearly with n; None if forks (or
    batches) keep waves too small for that."""
    for n in range(1, min(limit, p.forks, p.batch or limit) + 1):
        bottleneck = simulate(mode, n, p).bottleneck
        if bottleneck in SHARED:
            return n, bottleneck
    return None


# Calibration ---------------------------------------------------------------------

def load_calibration(path=CALIBRATION):
    """The lab's measurement, as make bench writes it."""
    return json.loads(Path(path).read_text())


def _lab(cal, x, y, f, h):
    """Lab parameters from per-host costs: x unpack CPU, y controller CPU to
    push the bytes, f fixed time, h fixed CPU (controller and host), in s."""
    b, inf = cal["bytes_per_host"], math.inf
    return Params(bytes_per_host=b, control_bytes=cal["pull"]["controller_bytes"] / cal["hosts"],
                  uplink=inf, cache=inf, downlink=inf, forks=cal["forks"],
                  controller_cores=cal["controller_cores"], push_rate=b / y, cpu_per_host=h,
                  unpack_rate=b / x, fixed=f, shared_cpu=True)


def _fits(cal):
    """Candidate lab parameters, one per regime of the fleet runs' fixed phase.

    The fleet runs are CPU-bound, so their difference is the controller's
    push CPU: y = cores * (push fleet_s - pull fleet_s) / hosts. Alone, a
    host is bound by its slowest stream: pull by unpack (f + x), push by the
    slower of unpack and the controller's stream (f + max(x, y)), so the
    difference of the one-host times gives x. Regime A: the fixed phase is
    CPU-bound too, and pull fleet_s gives h. Regime B: it is not (f wins),
    pull fleet_s gives x instead and h is at most cores * f / hosts."""
    c, cores, b = cal["hosts"], cal["controller_cores"], cal["bytes_per_host"]
    (t1p, t6p), (t1s, t6s) = ((cal[m]["one_host_s"], cal[m]["fleet_s"]) for m in ("pull", "push"))
    ctl = cal["pull"]["controller_bytes"] / c
    eps = 1e-3 * t1p
    y = max(cores * (t6s - t6p) / c, eps)
    per_host = cores * t6p / c - y * ctl / b                 # h + x
    x = min(max(y * (b + ctl) / b - (t1s - t1p), eps), per_host)
    yield _lab(cal, x, y, max(t1p - x, 0.0), max(per_host - x, 0.0))
    if c > cores:
        x = max((t6p - t1p - c * y * ctl / (b * cores)) / (c / cores - 1), eps)
        f = max(t1p - x, 0.0)
        yield _lab(cal, x, y, f, cores * f / c)


def lab_check(cal, lab):
    """{(mode, "one_host_s" | "fleet_s"): (model, measured, error %)}."""
    runs = [(m, k, n) for m in ("push", "pull")
            for k, n in (("one_host_s", 1), ("fleet_s", cal["hosts"]))]
    out = {(m, k): (simulate(m, n, lab).seconds, cal[m][k]) for m, k, n in runs}
    return {key: (model, real, 100 * (model - real) / real) for key, (model, real) in out.items()}


def fit_lab(cal):
    """The lab parameters that reproduce the four timings best (largest error)."""
    return min(_fits(cal), key=lambda lab: max(abs(e[2]) for e in lab_check(cal, lab).values()))


def calibrate(cal, **overrides):
    """Fleet parameters (defaults, *overrides*) with the lab's costs: fixed
    time, unpack rate and push rate per core as measured; the controller's
    share of the fixed CPU from pull.controller_cpu_s when measured, else
    half of it (the other half is the host's: its sshd, sh and commit)."""
    lab = fit_lab(cal)
    measured = cal["pull"].get("controller_cpu_s")
    own = (measured / cal["hosts"] - lab.control_bytes / lab.push_rate
           if measured is not None else lab.cpu_per_host / 2)
    costs = dict(control_bytes=lab.control_bytes, push_rate=lab.push_rate, fixed=lab.fixed,
                 unpack_rate=lab.unpack_rate, cpu_per_host=min(max(own, 0.0), lab.cpu_per_host))
    return replace(Params(), **{**costs, **overrides})


# Output --------------------------------------------------------------------------

def _bytes(n):
    """Bytes in SI units, 3 digits."""
    for unit, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n:.0f} B"


def _time(s):
    """Seconds, minutes or hours, 3 digits."""
    return f"{s:.3g} s" if s < 120 else f"{s / 60:.3g} min" if s < 7200 else f"{s / 3600:.3g} h"


def table(p, markdown=True):
    """Push against pull for TABLE_N hosts, as markdown or aligned text."""
    head = ["hosts", "push egress", "push time", "push bound",
            "pull egress", "pull time", "pull bound"]
    rows = [[f"{n:,}"] + [v for r in (simulate(m, n, p) for m in ("push", "pull"))
                          for v in (_bytes(r.egress_bytes), _time(r.seconds), r.bottleneck)]
            for n in TABLE_N]
    if markdown:
        return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in [head] + rows)
    return "\n".join(line.rstrip() for line in lines)


def stop_lines(p):
    """One sentence per mode: where it stops scaling."""
    out = []
    for mode in ("push", "pull"):
        at = stop_scaling(mode, p)
        out.append(f"- {mode} stops scaling at {at[0]:,} hosts ({at[1]})" if at else
                   f"- {mode}: no shared resource binds before forks ({p.forks}) do")
    return out


def holdout_check(cal, lab):
    """{mode: (model, measured, error %)} for the run the fit never saw: the
    same hosts with fewer forks (waves), when the calibration has it."""
    h = cal.get("holdout")
    if not h:
        return {}
    p = replace(lab, forks=h["forks"])
    return {m: (simulate(m, h["hosts"], p).seconds, h[m + "_s"],
                100 * (simulate(m, h["hosts"], p).seconds - h[m + "_s"]) / h[m + "_s"])
            for m in ("push", "pull")}


def link_holdout_check(cal, lab):
    """{mode: (model, measured, error %, bottleneck)} for the link-bound lab
    run the fit never saw (bench/model.py): N hosts behind links shaped by
    the kernel, the controller's uplink and the cache shaped apart. The
    model gets the links' rates (what iperf3 measured TCP to get through
    each, when measured: a link is known by what it carries) and the bytes
    per host; nothing is fitted."""
    h = cal.get("holdout_link")
    if not h:
        return {}

    def rate(link):
        return h.get(link + "_goodput_mbit", h[link + "_mbit"]) * 1e6 / 8
    p = replace(lab, forks=h["forks"], bytes_per_host=h["bytes_per_host"],
                uplink=rate("uplink"), cache=rate("cache"), downlink=rate("host"))
    out = {}
    for m in ("push", "pull"):
        r = simulate(m, h["hosts"], p)
        out[m] = (r.seconds, h[m + "_s"], 100 * (r.seconds - h[m + "_s"]) / h[m + "_s"],
                  r.bottleneck)
    return out


def lab_lines(cal, lab):
    """The lab's measured timings next to the model's, as a markdown table:
    the four runs it is fitted to, then the held-out one."""
    lines = ["| lab run | measured | model | error |", "|---|---|---|---|"]
    for (mode, key), (model, measured, err) in lab_check(cal, lab).items():
        lines.append(f"| {mode} {key} (fitted) | {measured:.2f} s | {model:.2f} s | {err:+.1f}% |")
    h = cal.get("holdout", {})
    for mode, (model, measured, err) in holdout_check(cal, lab).items():
        lines.append(f"| {mode} {h['hosts']} hosts, forks {h['forks']} (held out) | "
                     f"{measured:.2f} s | {model:.2f} s | {err:+.1f}% |")
    k = cal.get("holdout_link", {})
    for mode, (model, measured, err, bound) in link_holdout_check(cal, lab).items():
        lines.append(f"| {mode} {k['hosts']} hosts behind {k['host_mbit']} Mbit/s links, uplink "
                     f"{k['uplink_mbit']} Mbit/s, cache {k['cache_mbit']} Mbit/s, forks "
                     f"{k['forks']} (held out, link-bound: {bound}) | {measured:.2f} s | "
                     f"{model:.2f} s | {err:+.1f}% |")
    return lines


def caption(p):
    """The parameters in one line."""
    batch = f"batches of {p.batch}" if p.batch else "one batch"
    return (f"{p.bytes_per_host / MIB:.0f} MiB per host, control {_bytes(p.control_bytes)}; "
            f"controller uplink {p.uplink / GBIT:g} Gbit/s, cache {p.cache / GBIT:g} Gbit/s, "
            f"host downlink {p.downlink / GBIT:g} Gbit/s; forks {p.forks}, {batch}; "
            f"{p.controller_cores} controller cores at {p.push_rate / 1e6:.0f} MB/s each, "
            f"{p.cpu_per_host:.2f} s CPU per host; unpack {p.unpack_rate / 1e6:.0f} MB/s; "
            f"fixed {p.fixed:.2f} s per host")


def plot(p, out):
    """Two log-log panels, controller egress and rollout time against fleet
    size, each mode's stop-scaling point marked; written as a PNG to *out*."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = sorted(set(range(1, 101)) | {round(10 ** (k / 40)) for k in range(161)})
    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    for mode, colour in (("push", "tab:red"), ("pull", "tab:blue")):
        results = [simulate(mode, n, p) for n in ns]
        ax_e.plot(ns, [r.egress_bytes / 1e9 for r in results], color=colour, label=mode)
        ax_t.plot(ns, [r.seconds / 60 for r in results], color=colour, label=mode)
        at = stop_scaling(mode, p)
        if at:
            r = simulate(mode, at[0], p)
            for ax, y in ((ax_e, r.egress_bytes / 1e9), (ax_t, r.seconds / 60)):
                ax.plot([at[0]], [y], "o", color=colour, markersize=8,
                        label=f"{mode} stops scaling: {at[0]:,} hosts ({at[1]})")
    for ax, ylabel in ((ax_e, "controller egress (GB)"), (ax_t, "rollout time (min)")):
        ax.set(xscale="log", yscale="log", xlabel="fleet size (hosts)", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_e.set_title("Controller egress over SSH")
    ax_t.set_title("Rollout time")
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(caption(p), 160)), ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out, format="png")
    plt.close(fig)


def write_outputs(cal, png=ROOT / "docs" / "fleet-scale.png", doc=None, **overrides):
    """What make bench calls after measuring: writes the PNG (if *png*) and
    the section of the markdown file *doc* (if given) between the BEGIN and
    END markers: lab check, stop-scaling points, table. Returns the section."""
    lab, p = fit_lab(cal), calibrate(cal, **overrides)
    note = " The values are placeholders." if cal.get("placeholder") else ""
    text = "\n".join([f"Calibration: {cal['measured']}.{note}", "", *lab_lines(cal, lab), "",
                      *stop_lines(p), "", table(p), "", f"Parameters: {caption(p)}."])
    if png:
        plot(p, png)
    if doc:
        head, rest = Path(doc).read_text().split(BEGIN, 1)
        Path(doc).write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return text


CALIBRATED = ("control_bytes", "push_rate", "cpu_per_host", "unpack_rate", "fixed")
OPTIONS = {  # name: (unit, scale to the model's unit or None for a count, what)
    "bytes_per_host": ("MiB", MIB, "bytes each host needs"),
    "control_bytes": ("B", 1, "manifest and control bytes per host"),
    "uplink": ("Gbit/s", GBIT, "controller uplink"),
    "cache": ("Gbit/s", GBIT, "cache bandwidth"),
    "downlink": ("Gbit/s", GBIT, "each host's downlink"),
    "forks": ("hosts", None, "hosts in flight at once"),
    "batch": ("hosts", None, "rolling batch size"),
    "controller_cores": ("cores", None, "controller cores"),
    "push_rate": ("MB/s", 1e6, "SSH bytes one controller core sends per second"),
    "cpu_per_host": ("s", 1, "controller CPU per host"),
    "unpack_rate": ("MB/s", 1e6, "bytes a host unpacks and verifies per second"),
    "fixed": ("s", 1, "per-host fixed time (connect, plan, commit, switch)")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibration", default=CALIBRATION, help="the lab's measurement (JSON)")
    ap.add_argument("--out", default=ROOT / "docs" / "fleet-scale.png", help="the PNG")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--doc", help="rewrite the generated section of this markdown file")
    for name, (unit, scale, what) in OPTIONS.items():
        d = getattr(Params(), name)
        d = "calibrated" if name in CALIBRATED else d and f"{d / (scale or 1):g} {unit}"
        ap.add_argument("--" + name.replace("_", "-"), type=float, metavar=unit,
                        help=f"{what} (default: {d or 'the whole fleet'})")
    args = ap.parse_args(argv)
    overrides = {name: (int(v) if scale is None else v * scale)
                 for name, (_, scale, _) in OPTIONS.items()
                 if (v := getattr(args, name)) is not None}
    cal = load_calibration(args.calibration)
    write_outputs(cal, args.out, args.doc, **overrides)
    p = calibrate(cal, **overrides)
    print("\n".join(lab_lines(cal, fit_lab(cal))), "\n".join(stop_lines(p)),
          table(p, args.markdown), sep="\n\n")


if __name__ == "__main__":
    main()
