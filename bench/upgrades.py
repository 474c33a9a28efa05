"""Figures 8 and 8b: upgrades of the real tree (same source under a new
label; 1% of its files changed), bytes sent against the first deploy's.

    python bench/upgrades.py            (this family alone)
"""

import subprocess
import sys
import tarfile
import time

from harness import BENCH, log, median
from fruixops.rollout import deploy
from fruixops.rollout import push
from fruixops.controller import Controller
from fruixops.rollout.events import Events


class Upgrades:
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



if __name__ == "__main__":
    import run
    run.main(["--family", "upgrades", *sys.argv[1:]])
