"""Figures 1-5 and 7: cold deploys (synthetic, tmpfs, real files), the same
over a link shaped by the kernel (links.py), no-op and incremental
redeploys, the controller's memory, hashing a tree.

    python bench/cold.py [--quick]      (this family alone)
"""

import os
import subprocess
import sys
import time

from harness import BENCH, ROOT, baseline_items, log, median
from fruixops.rollout import deploy
from fruixops.store import sources
from fruixops.controller import Controller
from fruixops.rollout.events import Events

class Cold:
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




if __name__ == "__main__":
    import run
    run.main(["--family", "cold", *sys.argv[1:]])
