"""Figure 2: the real tree over links shaped by the kernel (lab_link: the
host in a network namespace of its own, TBF at the link's rate each way,
fruixops/lab/link.py), 200 Mbit/s 10 ms and 1 Gbit/s 1 ms each way; the
kernel's TCP end to end. Against `tar | ssh` and `tar | zstd -3 | ssh`
over the same link, and against the wire's own limit (bytes sent / rate).
Before the runs, iperf3 checks that the link holds its rate, both ways."""

import json
import subprocess
import time

from harness import BENCH, Harness, baseline_items, log, median
from fruixops.rollout import deploy
from fruixops.controller import Controller
from fruixops.rollout.events import Events
from fruixops.lab import link as lablink

LINKS = ((200, 10), (1000, 1))
ADDRESS = "10.77.1.2"


def linked_inventory(text, hosts, name):
    """The inventory *text* with each of *hosts* ({name: (address, mbit,
    delay_ms)}) behind a shaped link; written as .bench/inventories/*name*."""
    for host, (addr, mbit, delay) in hosts.items():
        text = text.replace(f"{host}: {{ssh_port:", f"{host}: {{ssh_host: {addr}, lab_link: "
                            f"{{mbit: {mbit}, delay_ms: {delay}}}, ssh_port:", 1)
    path = BENCH / "inventories" / name
    path.write_text(text)
    return path


def iperf_run(server, client, seconds=3):
    """One iperf3 measurement: *server* and *client* are the commands (with
    their namespaces); returns (Mbit/s received, the sender's mean RTT in
    ms) or None when iperf3 could not run, after 5 tries."""
    for _ in range(5):
        srv = subprocess.Popen(server + ["-s", "-1"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            r = subprocess.run(client + ["-t", str(seconds), "-J"], capture_output=True,
                               text=True)
            try:
                j = json.loads(r.stdout)
                return (j["end"]["sum_received"]["bits_per_second"] / 1e6,
                        j["end"]["streams"][0]["sender"].get("mean_rtt", 0) / 1000)
            except (ValueError, KeyError, IndexError):
                log(f"iperf3: {(r.stdout or r.stderr)[-200:]!r}; again")
        finally:
            srv.kill()
            srv.wait()
    return None


def iperf(host, seconds=3):
    """What the link carries, each way (iperf3, one TCP stream): Mbit/s and
    the sender's smoothed RTT in ms (None where iperf3 could not run)."""
    inside = ["ip", "netns", "exec", lablink.names(host)[0]]
    out = {}
    for way, flag in (("down", []), ("up", ["-R"])):
        got = iperf_run(inside + ["iperf3", "-B", host.ssh_host, "-p", "5201"],
                        ["iperf3", "-c", host.ssh_host, "-p", "5201", *flag], seconds)
        out[way] = {"mbit": got[0] if got else None, "rtt_ms": got[1] if got else None}
    return out


class Links:
    def link(self, base, host="web2", links=LINKS):
        out = {}
        for mbit, delay_ms in links:
            out[f"{mbit}/{delay_ms}"] = self._link_once(base, host, mbit, delay_ms)
        self.results["link"] = out

    def _link_once(self, base, host, mbit, delay_ms):
        inv = linked_inventory(self.inv_path.read_text(), {host: (ADDRESS, mbit, delay_ms)},
                               f"bench-link-{mbit}.yaml")
        self.lab.down([self.host(host)])
        lb = Harness(inv, self.runs)
        h = lb.host(host)
        ctl = Controller(inv)
        closure = ctl.closure(h, lb.inv.base(base))
        size = sum(it.size for it in closure)
        items_dir = baseline_items(ctl, base, closure)
        ours, theirs, zstd, sent = [], [], [], 0
        try:
            lb.bare(host)
            check = iperf(h)
            if check["down"]["mbit"] and check["up"]["mbit"]:
                log(f"link {mbit} Mbit/s {delay_ms} ms: iperf3 {check['down']['mbit']:.0f} Mbit/s "
                    f"down, {check['up']['mbit']:.0f} up, RTT {check['down']['rtt_ms']:.1f} ms "
                    f"under load: it holds {100 * check['down']['mbit'] / mbit:.1f}% of its rate")

            # Every run starts on a bare host whose old files are moved aside,
            # never deleted just before (ext4's slow allocation after a mass
            # delete: Harness.set_aside), for fruixops and both baselines.
            def ours_once():
                lb.set_aside(host)
                t0 = time.monotonic()
                r = deploy.deploy(Controller(inv), host, base, events=Events())
                ours.append(time.monotonic() - t0)
                return r.bytes_sent

            def pipe(into, compress):
                lb.ssh(host, f"[ ! -e /frx/scratch ] || mv /frx/scratch /frx/aside.{time.time_ns()}")
                t0 = time.monotonic()
                tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(items_dir), "."],
                                       stdout=subprocess.PIPE)
                src = tar
                if compress:
                    # What a user would script on a slow link: compress on the way.
                    src = subprocess.Popen(["zstd", "-3", "-q", "-c"], stdin=tar.stdout,
                                           stdout=subprocess.PIPE)
                lb.ssh(host, "mkdir -p /frx/scratch && " + ("zstd -dcq | " if compress else "")
                       + "tar -xf - -C /frx/scratch", stdin=src.stdout)
                tar.wait()
                src.wait()
                into.append(time.monotonic() - t0)

            for i in range(self.runs):
                steps = [lambda: ours_once(), lambda: pipe(theirs, False),
                         lambda: pipe(zstd, True)]
                for step in (steps if i % 2 == 0 else steps[::-1]):
                    sent = step() or sent
                log(f"link {mbit}/{delay_ms} run {i + 1}: fruixops {ours[-1]:.2f}s, "
                    f"tar|ssh {theirs[-1]:.2f}s, tar|zstd|ssh {zstd[-1]:.2f}s")
        finally:
            lb.lab.down([h])
            self.cleanup()
            self.bare(host)
        f, wire = median(ours), sent * 8 / (mbit * 1e6)
        return {"mbit": mbit, "delay_ms": delay_ms, "iperf": check, "bytes": size,
                "bytes_sent": sent, "fruixops_s": f, "baseline_s": median(theirs),
                "zstd_baseline_s": median(zstd), "wire_s": wire,
                "ratio": median(theirs) / f, "ratio_zstd": median(zstd) / f,
                "of_wire": f / wire, "goal_zstd": 1.3 if mbit <= 200 else 1.0,
                "goal_wire": 1.15 if mbit <= 200 else None}
