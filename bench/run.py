"""make bench: fruixops against the OpenSSH `tar | ssh` pipeline, on the lab.

Every figure is measured side by side in the same run (alternating runs,
medians) and given as a ratio against its baseline. Prints a table and one
JSON line. Needs root (the lab). Work files go to .bench/ (git-ignored).

    python bench/run.py [--quick]      (--quick: smaller sizes, 1 run each)
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fruixops.rollout import cache, deploy
from fruixops.store import distgen
from fruixops.rollout import fleet
from fruixops.inventory import model as inventory
from fruixops.rollout import push
from fruixops.store import sources  # noqa: E402
from fruixops.controller import Controller  # noqa: E402
from fruixops.rollout.events import Events  # noqa: E402
from fruixops.lab import Lab  # noqa: E402
from fruixops.lab.webcache import WebCache  # noqa: E402

BENCH = ROOT / ".bench"
# The lab's ports are shifted by this much (FRUIXOPS_BENCH_PORT_SHIFT), so
# that a bench can run beside tests and other benches on the same machine.
PORT_SHIFT = int(os.environ.get("FRUIXOPS_BENCH_PORT_SHIFT", "2000"))
TMPFS_MB = 3072
# Figure 1r: real binaries, headers, man pages and locales from this machine
# (about 700 MiB in 36,000 files on Debian), not a generated tree.
REAL_DIRS = ("/usr/bin", "/usr/share/man", "/usr/include", "/usr/share/locale",
             "/usr/lib/python3")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def real_tree(dest):
    """A staging tree made of real files: REAL_DIRS copied under *dest*
    (regular files, directories and symlinks only, as a store item holds)."""
    for d in REAL_DIRS:
        if not os.path.isdir(d):
            continue
        target = dest / d.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--no-preserve=ownership", d, str(target)], check=True)
    subprocess.run(["find", str(dest), "!", "-type", "f", "!", "-type", "d", "!", "-type", "l",
                    "-delete"], check=True)
    subprocess.run(["chmod", "-R", "u+rw,go-w,-s", str(dest)], check=True)
    # A base needs a kernel the loader can boot: the smallest synthetic one
    # (4 MiB, some 50 files: the rest of the tree is real).
    distgen.generate_tree(dest, seed="bench-real", size_mb=4)
    return dest


def one_percent(src, dest):
    """*dest*: a copy of the tree *src* (hard links) in which 1% of the
    non-empty regular files are rewritten as a patch release would: their
    bytes changed here and there. Returns the changed files (relative)."""
    subprocess.run(["cp", "-al", str(src), str(dest)], check=True)
    files = sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.stat().st_size > 0)
    changed = files[::100]
    for p in changed:
        data = bytearray(p.read_bytes())
        for i in range(0, len(data), 4096):
            data[i] ^= 0x5a
        mode = p.stat().st_mode
        p.unlink()                   # break the hard link to the source tree
        p.write_bytes(bytes(data))
        p.chmod(mode)
    return [str(p.relative_to(dest)) for p in changed]


def setup(sizes, real=False):
    from tests.conftest import stop_stray_supervisors  # the same clean-up the tests use
    stop_stray_supervisors(BENCH)
    # Everything from an earlier run goes but the controller's store: its
    # items are content-addressed (the same trees give the same items), and
    # the real base takes minutes to compress at level 19. No figure times a
    # build but figure 7, which uses a cold hash cache of its own. With
    # FRUIXOPS_BENCH_KEEP_REAL=1 the real trees stay too: this machine's
    # files change as people work on it, and another copy of them is another
    # level-19 build (minutes), where runs before and after a change must
    # deploy the same tree.
    keep = {".frx"} | ({"trees", "changed-files.txt"}
                       if os.environ.get("FRUIXOPS_BENCH_KEEP_REAL") == "1" else set())
    if BENCH.exists():
        for old in BENCH.iterdir():
            if old.name not in keep:
                subprocess.run(["chmod", "-R", "u+w", str(old)], check=False)
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    (BENCH / "inventories").mkdir(parents=True)
    # The lab's hosts render templates: they go along, as in the tests' copy.
    shutil.copytree(ROOT / "inventories" / "templates", BENCH / "inventories" / "templates")
    (BENCH / "aside").mkdir()
    (BENCH / "keys").mkdir()
    from tests.conftest import lab_inventory_text
    text = lab_inventory_text(PORT_SHIFT)            # no cache: every figure but 6c pushes
    bases = ["bases:"]
    for name, mb in sizes.items():
        t0 = time.monotonic()
        tree = distgen.generate_tree(BENCH / "trees" / name, seed=f"bench-{name}", size_mb=mb)
        log(f"generated a {mb} MiB tree for {name} in {time.monotonic() - t0:.1f}s")
        bases += [f"  {name}:", f"    version_label: 15.0-BENCH-{name}", "    release: 15.0-STABLE",
                  "    branch: stable/15", f"    source: {{tree: {{path: {tree}}}}}"]
    if "fleet" in sizes:
        # Figure 6c's upgrade: the same tree under another label (every item
        # new, every file already on the hosts).
        bases += ["  fleet-p1:", "    version_label: 15.0-BENCH-fleet-p1",
                  "    release: 15.0-STABLE", "    branch: stable/15",
                  f"    source: {{tree: {{path: {BENCH / 'trees' / 'fleet'}}}}}"]
    if real:
        t0 = time.monotonic()
        tree = BENCH / "trees" / "real"
        if not (tree.exists() and "trees" in keep):
            real_tree(tree)
        log(f"copied real files for figure 1r in {time.monotonic() - t0:.1f}s")
        bases += ["  real:", "    version_label: 15.0-BENCH-real", "    release: 15.0-STABLE",
                  "    branch: stable/15", f"    source: {{tree: {{path: {tree}}}}}"]
    if real:
        # Figure 8: upgrades of the real tree. The same source under another
        # label, and a copy with 1% of its files changed (hard-linked, the
        # changed ones rewritten).
        if not (BENCH / "trees/real-1pct").exists():
            changed = one_percent(tree, BENCH / "trees" / "real-1pct")
            (BENCH / "changed-files.txt").write_text("".join(f"{p}\n" for p in changed))
        for name, path in (("real-p1", tree), ("real-1pct", BENCH / "trees" / "real-1pct")):
            bases += [f"  {name}:", f"    version_label: 15.0-BENCH-{name}",
                      "    release: 15.0-STABLE", "    branch: stable/15",
                      f"    source: {{tree: {{path: {path}}}}}"]
    text = text.replace("bases:\n", "\n".join(bases) + "\n", 1)
    # web1 gets a tmpfs as /frx, for figure 1b: the copy without the disk.
    text = text.replace("web1: {ssh_port:", f"web1: {{lab_frx_tmpfs_mb: {TMPFS_MB}, ssh_port:")
    inv = BENCH / "inventories/bench.yaml"
    inv.write_text(text)
    # The upgrades are built at zstd level 3 (its whole archives are never
    # sent: the host gets deltas, made at that level too): the figure is then
    # conservative, and the bench does not compress 700 MiB at level 19 twice more.
    (BENCH / "inventories/bench-upgrade.yaml").write_text(
        text.replace("fruixops:\n", "fruixops:\n  zstd_level: 3\n", 1))
    # The same fleet, web2 with one more service: only its system item changes.
    (BENCH / "inventories/bench-svc.yaml").write_text(
        text.replace("web2: {ssh_port:", "web2: {services: [sshd, ntpd], ssh_port:"))
    (BENCH / "inventories/bench-svc2.yaml").write_text(
        text.replace("web2: {ssh_port:", "web2: {services: [sshd, ntpd, cron], ssh_port:"))
    # Figure 6c: the same fleet with the lab's cache (nginx) to pull from.
    cached = lab_inventory_text(PORT_SHIFT, cache=True)
    cache_block = cached[cached.index("  # The fleet's item cache"):cached.index("\nbases:")]
    (BENCH / "inventories/bench-cache.yaml").write_text(
        text.replace("\nbases:", "\n" + cache_block + "\nbases:", 1))
    return inv


def baseline_items(ctl, base, items):
    """The items the baseline copies: the same as fruixops sends, unpacked as
    trees (once per base)."""
    items_dir = BENCH / "items" / base
    if not items_dir.exists():
        for it in items:
            d = items_dir / it.path.base
            d.mkdir(parents=True)
            with tarfile.open(ctl.builder.store.archive(it.path)) as tar:
                tar.extractall(d, filter="tar")
    return items_dir


def median(xs):
    return statistics.median(xs)


class Bench:
    def __init__(self, inv, runs):
        self.inv_path, self.runs = inv, runs
        self.cold_runs = max(runs, 5) if runs > 1 else 1
        self.inv = inventory.load(inv)
        self.lab = Lab(self.inv)
        self.results = {}

    def host(self, name):
        return self.inv.host(name)

    def bare(self, *names):
        hosts = [self.host(n) for n in names]
        self.lab.reset(hosts)
        self.lab.up(hosts)

    def set_aside(self, name):
        """Make *name* bare without deleting anything yet: its disk is moved
        aside (and deleted by cleanup()). On ext4, files created within seconds
        of a mass delete in the same block group are slow and erratic to
        allocate (perf: the kernel's `recently_deleted` check, over 40% of
        tar's samples), which would measure this machine's deletes, not the copy."""
        host = self.host(name)
        self.lab.down([host])
        disk = self.lab.disk(name)
        if disk.exists():
            disk.rename(BENCH / "aside" / f"{name}-{time.monotonic_ns()}")
        self.lab.up([host])

    def cleanup(self):
        aside = BENCH / "aside"
        subprocess.run(["chmod", "-R", "u+w", str(aside)], check=False)
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()

    def ssh(self, name, command, stdin=None):
        h = self.host(name)
        args = ["ssh", "-o", f"UserKnownHostsFile={self.inv.settings.known_hosts}",
                "-o", "BatchMode=yes", "-i", h.var("ssh_key"), "-p", str(h.var("ssh_port")),
                f"root@{h.ssh_host}", command]
        return subprocess.run(args, stdin=stdin, capture_output=True, check=True)

    # 1. cold deploy throughput --------------------------------------------------
    def cold(self, base, host="web2", key="cold"):
        ctl = Controller(self.inv_path)
        ctl.build(base, host)
        m, _, _ = ctl.make_manifest(host, base)
        size = sum(it.size for it in m.items)
        items_dir = baseline_items(ctl, base, m.items)
        nfiles = sum(len(f) for _, _, f in os.walk(items_dir))
        ours, theirs, durable = [], [], []

        def ours_once():
            self.set_aside(host)
            subprocess.run(["sync"], check=True)    # no writeback left from before
            t0 = time.monotonic()
            r = deploy.deploy(Controller(self.inv_path), host, base, events=Events())
            ours.append(time.monotonic() - t0)
            assert r.items_sent == len(m.items)

        def tar_ssh(into, flush=""):
            self.ssh(host, f"[ ! -e /frx/scratch ] || mv /frx/scratch /frx/aside.{time.time_ns()}")
            subprocess.run(["sync"], check=True)
            t0 = time.monotonic()
            tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(items_dir), "."],
                                   stdout=subprocess.PIPE)
            self.ssh(host, f"mkdir -p /frx/scratch && tar -xf - -C /frx/scratch{flush}",
                     stdin=tar.stdout)
            tar.wait()
            into.append(time.monotonic() - t0)

        def theirs_once():
            tar_ssh(theirs)

        def durable_once():
            # The same guarantee fruixops gives (everything on stable storage
            # before it answers): the pipeline, then a flush of the file system.
            tar_ssh(durable, " && sync -f /frx/scratch")

        # Alternate which goes first, so that drift on this machine cancels out.
        for i in range(self.cold_runs):
            order = (ours_once, theirs_once, durable_once)
            for once in (order if i % 2 == 0 else order[::-1]):
                once()
            log(f"{key} {base} on {host} run {i + 1}: fruixops {ours[-1]:.2f}s, "
                f"tar|ssh {theirs[-1]:.2f}s, tar|ssh + sync {durable[-1]:.2f}s")
        self.ssh(host, "rm -rf /frx/scratch")      # the closure stays: noop() needs it
        self.cleanup()
        f, b, bd = median(ours), median(theirs), median(durable)
        self.results[key] = {"host": host, "frx": "tmpfs" if self.host(host).var(
                                 "lab_frx_tmpfs_mb") else "ext4", "bytes": size, "files": nfiles,
                             "items": len(m.items),
                             "fruixops_s": f, "baseline_s": b, "fruixops_MBps": size / f / 1e6,
                             "baseline_MBps": size / b / 1e6, "ratio": b / f, "goal": 1.1,
                             "durable_baseline_s": bd, "ratio_durable": bd / f}

    # 2. the same over an emulated link ------------------------------------------------
    def link(self, base, host="web2", mbit=200, delay_ms=10):
        h = self.host(host)
        port, relay = h.var("ssh_port"), h.var("ssh_port") + 500
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench/link.py"), str(relay),
                                 str(port), "--mbit", str(mbit), "--delay-ms", str(delay_ms)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        kh = Path(self.inv.settings.known_hosts)
        line = next(ln for ln in kh.read_text().splitlines()
                    if ln.startswith(f"[127.0.0.1]:{port} "))
        kh.write_text(kh.read_text() + line.replace(f":{port} ", f":{relay} ", 1) + "\n")
        inv = BENCH / "inventories/bench-link.yaml"
        inv.write_text(self.inv_path.read_text().replace(
            f"{host}: {{ssh_port: {port}", f"{host}: {{ssh_port: {relay}", 1))
        ctl = Controller(inv)
        closure = ctl.closure(self.host(host), self.inv.base(base))
        size = sum(it.size for it in closure)
        items_dir = baseline_items(ctl, base, closure)
        ours, theirs, zstd, sent = [], [], [], 0
        try:
            for i in range(self.runs):
                self.bare(host)
                t0 = time.monotonic()
                r = deploy.deploy(Controller(inv), host, base, events=Events())
                ours.append(time.monotonic() - t0)
                sent = r.bytes_sent
                self.ssh(host, "rm -rf /frx/scratch")
                t0 = time.monotonic()
                tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(items_dir), "."],
                                       stdout=subprocess.PIPE)
                args = ["ssh", "-o", f"UserKnownHostsFile={kh}", "-o", "BatchMode=yes",
                        "-i", h.var("ssh_key"), "-p", str(relay), f"root@{h.ssh_host}",
                        "mkdir -p /frx/scratch && tar -xf - -C /frx/scratch"]
                subprocess.run(args, stdin=tar.stdout, check=True, capture_output=True)
                tar.wait()
                theirs.append(time.monotonic() - t0)
                # What a user would script on a slow link: compress on the way.
                self.ssh(host, "rm -rf /frx/scratch")
                t0 = time.monotonic()
                tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(items_dir), "."],
                                       stdout=subprocess.PIPE)
                zst = subprocess.Popen(["zstd", "-3", "-q", "-c"], stdin=tar.stdout,
                                       stdout=subprocess.PIPE)
                args[-1] = "mkdir -p /frx/scratch && zstd -dcq | tar -xf - -C /frx/scratch"
                subprocess.run(args, stdin=zst.stdout, check=True, capture_output=True)
                tar.wait()
                zst.wait()
                zstd.append(time.monotonic() - t0)
                log(f"link run {i + 1}: fruixops {ours[-1]:.2f}s, tar|ssh {theirs[-1]:.2f}s, "
                    f"tar|zstd|ssh {zstd[-1]:.2f}s")
        finally:
            proc.terminate()
            proc.wait()
        f, b = median(ours), median(theirs)
        self.results["link"] = {"mbit": mbit, "delay_ms": delay_ms, "bytes": size,
                                "bytes_sent": sent, "fruixops_s": f, "baseline_s": b,
                                "ratio": b / f, "goal_zstd": 1.3, "zstd_baseline_s": median(zstd),
                                "ratio_zstd": median(zstd) / f}

    # 8. upgrades: what a host that holds the previous base receives -------------------
    def upgrades(self, host="web2"):
        import io
        import zstandard
        from fruixops.rollout import lifecycle
        up = BENCH / "inventories/bench-upgrade.yaml"
        # Each run: a cold deploy of the real tree to a bare host, then the
        # two upgrades, every one timed after a sync (nothing left to flush
        # from before), so that an upgrade's time is a ratio of the cold
        # deploy's in the same run.
        runs = {"cold": [], "real-p1": [], "real-1pct": []}
        Controller(self.inv_path).build("real", host)       # built before any is timed
        for i in range(self.runs):
            self.set_aside(host)
            subprocess.run(["sync"], check=True)
            t0 = time.monotonic()
            first = deploy.deploy(Controller(self.inv_path), host, "real", events=Events())
            runs["cold"].append(time.monotonic() - t0)
            out = {"first_bytes": first.bytes_sent}
            for base in ("real-p1", "real-1pct"):
                ctl = Controller(up)
                ctl.build(base, host)
                plan = lifecycle.plan(Controller(up), host, base)
                subprocess.run(["sync"], check=True)
                t0 = time.monotonic()
                r = deploy.deploy(Controller(up), host, base, events=Events())
                runs[base].append(time.monotonic() - t0)
                m, data, _ = ctl.make_manifest(host, base)
                out[base] = {"bytes_sent": r.bytes_sent, "planned_bytes": plan.bytes_to_send,
                             "deltas": r.deltas, "reused_files": r.reused_files,
                             "reused_bytes": r.reused_bytes, "manifest_bytes": len(data),
                             "ratio_first": r.bytes_sent / first.bytes_sent}
                log(f"upgrade run {i + 1} to {base}: {r.bytes_sent} B sent (planned "
                    f"{plan.bytes_to_send}), {r.reused_files} files reused, "
                    f"{runs[base][-1]:.2f}s; cold deploy {runs['cold'][-1]:.2f}s")
        out["cold_s"] = median(runs["cold"])
        for base in ("real-p1", "real-1pct"):
            out[base].update(seconds=median(runs[base]),
                             ratio_time=median(runs[base]) / out["cold_s"])
        # The 1% case against the changed files themselves, compressed (zstd
        # -3, as one tar), plus the listings and manifest that must go too.
        changed = (BENCH / "changed-files.txt").read_text().split()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel in changed:
                tar.add(BENCH / "trees/real-1pct" / rel, arcname=rel)
        zsize = len(zstandard.ZstdCompressor(level=3).compress(buf.getvalue()))
        ctl = Controller(up)
        m, _, _ = ctl.make_manifest(host, "real-1pct")
        new = [it for it in m.items if str(it.path) in r.sent]
        listings = len(push.listings_payload(new, ctl.builder.store, r.compressed))
        one = out["real-1pct"]
        one.update(changed_files=len(changed), changed_zstd_bytes=zsize, listings_bytes=listings,
                   ratio=one["bytes_sent"] / (zsize + listings + one["manifest_bytes"]))
        # The store on the host: the upgrades add only what changed.
        disk = self.lab.disk(host)
        du = subprocess.run(["du", "-sk", str(disk / "frx/store")], capture_output=True,
                            text=True, check=True).stdout.split()[0]
        out["store_kib"] = int(du)
        self.results["upgrades"] = out
        self.cleanup()

    # 3. no-op redeploy ------------------------------------------------------------
    def noop(self, base, host="web2"):
        from fruixops.remote import connection
        ours, theirs, runs_per = [], [], []
        original = connection.HostConnection.run
        counter = {"n": 0, "connections": 0}

        def counting_run(self, *a, **kw):
            counter["n"] += 1
            return original(self, *a, **kw)
        original_open = connection.HostConnection.open

        def counting_open(self):
            counter["connections"] += 1
            return original_open(self)
        connection.HostConnection.run = counting_run
        connection.HostConnection.open = counting_open
        try:
            for _ in range(max(3, self.runs)):
                counter.update(n=0, connections=0)
                t0 = time.monotonic()
                r = deploy.deploy(Controller(self.inv_path), host, base, events=Events())
                ours.append(time.monotonic() - t0)
                assert not r.changed and r.bytes_sent == 0
                runs_per.append((counter["n"], counter["connections"]))
                t0 = time.monotonic()
                self.ssh(host, "true")
                theirs.append(time.monotonic() - t0)
        finally:
            connection.HostConnection.run = original
            connection.HostConnection.open = original_open
        self.results["noop"] = {"fruixops_s": median(ours), "ssh_true_s": median(theirs),
                                "round_trips": runs_per[-1][0], "connections": runs_per[-1][1],
                                "item_bytes_sent": 0, "ratio": median(theirs) / median(ours)}

    # 4. incremental -------------------------------------------------------------------
    def incremental(self, base, host="web2"):
        out = {}
        # One more service each time: only the system item changes.
        for variant, compress in (("svc", "auto"), ("svc2", "none")):
            ctl = Controller(BENCH / f"inventories/bench-{variant}.yaml")
            m, data, _ = ctl.make_manifest(host, base)
            r = deploy.deploy(ctl, host, base, events=Events(), compress=compress)
            assert r.items_sent == 1
            item = next(it for it in m.items if str(it.path) == r.sent[0])
            out["zstd" if r.compressed else "none"] = {
                "items_sent": r.items_sent, "item": item.path.name, "item_bytes": item.size,
                "manifest_bytes": len(data), "bytes_sent": r.bytes_sent,
                "ratio": r.bytes_sent / (item.size + len(data)),
                "met": r.bytes_sent <= 1.01 * item.size + len(data)}
        self.results["incremental"] = dict(out["zstd"], uncompressed=out["none"],
                                           goal="<= 1.01 x item + manifest")

    # 5. controller memory -----------------------------------------------------------
    def memory(self, bases, host="db1"):
        out = {}
        for base in bases:
            Controller(self.inv_path).build(base, host)        # build first, separately
            self.bare(host)
            code = ("import resource, sys; sys.path.insert(0, %r)\n"
                    "from fruixops.controller import Controller\n"
                    "from fruixops.rollout import deploy\nfrom fruixops.rollout.events import Events\n"
                    "r = deploy.deploy(Controller(%r), %r, %r, events=Events())\n"
                    # VmHWM: this process's own peak (ru_maxrss would include
                    # the forking parent's, carried across exec on Linux).
                    "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
                    "print(r.bytes_sent, hwm)"
                    % (str(ROOT), str(self.inv_path), host, base))
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
            sent, rss_kib = map(int, p.stdout.split())
            ctl = Controller(self.inv_path)
            size = sum(it.size for it in ctl.closure(self.host(host), self.inv.base(base)))
            out[base] = {"closure_bytes": size, "bytes_sent": sent, "peak_rss_MiB": rss_kib / 1024}
            log(f"memory {base}: {size / 2**20:.0f} MiB closure ({sent / 2**20:.0f} MiB sent), "
                f"peak RSS {rss_kib / 1024:.1f} MiB")
        self.bare(host)
        self.results["memory"] = out

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
                        assert outcomes.exit_status() == 0
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

    # 7. build ---------------------------------------------------------------------------
    def build(self, base):
        tree = BENCH / "trees" / base
        files = [str(p) for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
        ours, theirs = [], []
        for _ in range(self.runs):
            cache = sources.HashCache(BENCH / "scratch-hash-cache.json")   # cold: empty cache
            cache.entries = {}
            t0 = time.monotonic()
            sources.tree_hash(tree, cache)
            ours.append(time.monotonic() - t0)
            t0 = time.monotonic()
            subprocess.run(["xargs", "-0", "sha256sum"], input="\0".join(files).encode(),
                           stdout=subprocess.DEVNULL, check=True)
            theirs.append(time.monotonic() - t0)
        ctl = Controller(self.inv_path)
        ctl.build(base, "web2")
        hits = []
        for _ in range(3):
            ctl = Controller(self.inv_path)
            t0 = time.monotonic()
            ctl.build(base, "web2")
            hits.append(time.monotonic() - t0)
            assert ctl.builder.built == 0
        size = sum(os.path.getsize(f) for f in files)
        self.results["build"] = {"bytes": size, "hash_s": median(ours),
                                 "sha256sum_s": median(theirs),
                                 "ratio": median(theirs) / median(ours), "goal": 0.8,
                                 "cache_hit_rebuild_s": median(hits)}


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


def _cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["cold", "cold_tmpfs", "cold_real", "upgrades",
                                       "incremental", "fleet_cache"],
                    help="just figure 1, 1b, 1r, 8, 4 or 6c: prints its JSON and stops")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: the lab needs root")
    sizes = ({"cold": 64, "mem": 128, "fleet": 16} if args.quick
             else {"cold": 512, "mem": 1024, "fleet": 64})
    runs = 1 if args.quick else 3
    if args.only == "fleet_cache":
        sizes = {"fleet": sizes["fleet"]}
    elif args.only:
        sizes = {"cold": sizes["cold"]}
    real = not args.quick and args.only in (None, "cold_real", "upgrades")
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
        if args.only:
            b.cold(*{"cold": ("cold",), "cold_tmpfs": ("cold", "web1", "cold_tmpfs"),
                     "cold_real": ("real", "web2", "cold_real")}[args.only])
            print(json.dumps(b.results[args.only], sort_keys=True))
            return
        b.cold("cold")
        b.cold("cold", "web1", "cold_tmpfs")
        b.noop("cold")                  # these two need web2 as figure 1 left it
        b.incremental("cold")
        if real:
            b.cold("real", "web2", "cold_real")
        b.link("real" if real else "fleet")
        if real:
            b.upgrades()
        b.memory(["fleet", "mem"])
        b.fleet("fleet")
        b.fleet_cache("fleet")
        b.build("mem")
    finally:
        b.lab.down(list(b.inv.hosts.values()))
    r = b.results
    r["meta"] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, "
                 f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                 f"{socket.gethostname()}", "runs": runs, "seconds": time.monotonic() - t_start}
    c, ct, lk, n, inc, mem, fl, bd, fc = (r[k] for k in ("cold", "cold_tmpfs", "link", "noop",
                                                         "incremental", "memory", "fleet",
                                                         "build", "fleet_cache"))

    def cold_row(c):
        return (f"{c['bytes'] / 2**20:.0f} MiB, {c['files']} files, /frx on {c['frx']}: fruixops "
                f"{c['fruixops_s']:.2f}s ({c['fruixops_MBps']:.0f} MB/s), tar|ssh "
                f"{c['baseline_s']:.2f}s ({c['baseline_MBps']:.0f} MB/s), tar|ssh + sync -f "
                f"{c['durable_baseline_s']:.2f}s")
    rows = [
        ("1 cold deploy", cold_row(c), f"{c['ratio']:.2f} (goal >= 1.1); "
                                       f"{c['ratio_durable']:.2f} vs + sync"),
        ("1b the same to tmpfs", cold_row(ct), f"{ct['ratio']:.2f}; "
                                               f"{ct['ratio_durable']:.2f} vs + sync"),
        *([("1r real binaries", cold_row(r["cold_real"]),
            f"{r['cold_real']['ratio']:.2f}; "
            f"{r['cold_real']['ratio_durable']:.2f} vs + sync (goal >= 1.0)")]
          if "cold_real" in r else []),
        ("2 emulated link", f"{lk['mbit']:.0f} Mbit/s, {lk['delay_ms']:.0f} ms each way, "
         f"{lk['bytes'] / 2**20:.0f} MiB ({lk['bytes_sent'] / 2**20:.1f} MiB sent): fruixops "
         f"{lk['fruixops_s']:.2f}s, tar|ssh {lk['baseline_s']:.2f}s, tar|zstd -3|ssh "
         f"{lk['zstd_baseline_s']:.2f}s",
         f"{lk['ratio']:.2f}x; {lk['ratio_zstd']:.2f}x vs zstd (goal >= 1.3x)"),
        *([("8 upgrade, same source", f"{r['upgrades']['real-p1']['bytes_sent']} B sent of "
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
            f"{r['upgrades']['real-1pct']['ratio']:.3f} (goal <= 1.1)")]
          if "upgrades" in r else []),
        ("3 no-op redeploy", f"{n['fruixops_s'] * 1000:.0f} ms, {n['connections']} connection, "
         f"{n['round_trips']} round trip(s), 0 item bytes; ssh true {n['ssh_true_s'] * 1000:.0f} ms",
         f"{n['ratio']:.2f} of ssh true"),
        ("4 incremental", f"{inc['items_sent']} item ({inc['item']}, {inc['item_bytes']} B) + "
         f"manifest {inc['manifest_bytes']} B: sent {inc['bytes_sent']} B (zstd), "
         f"{inc['uncompressed']['bytes_sent']} B (none, ratio "
         f"{inc['uncompressed']['ratio']:.4f})", f"{inc['ratio']:.4f} (goal <= 1.01)"),
        ("5 controller memory", ", ".join(f"{v['closure_bytes'] / 2**20:.0f} MiB closure: peak RSS "
                                          f"{v['peak_rss_MiB']:.0f} MiB" for v in mem.values()),
         "goal <= 150 MiB, flat"),
        ("6 fleet (6 hosts)", f"forks=6 {fl['forks6_s']:.2f}s, forks=1 {fl['forks1_s']:.2f}s",
         f"{fl['ratio']:.2f}x"),
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
         f"egress {fc['upgrade']['push']['controller_bytes'] / fc['upgrade']['pull']['controller_bytes']:.0f}x less"),
        ("7 build", f"hash {bd['bytes'] / 2**20:.0f} MiB: {bd['hash_s']:.2f}s vs sha256sum "
         f"{bd['sha256sum_s']:.2f}s; cache-hit rebuild {bd['cache_hit_rebuild_s'] * 1000:.0f} ms",
         f"{bd['ratio']:.2f} (goal >= 0.8)"),
    ]
    print(f"fruixops bench {r['meta']['date']} on {r['meta']['machine']}, "
          f"{runs} runs each ({b.cold_runs} for figure 1; medians), {r['meta']['seconds']:.0f}s")
    for name, what, ratio in rows:
        print(f"{name:22} {ratio:26} {what}")
    print(json.dumps(r, sort_keys=True))


if __name__ == "__main__":
    main()
