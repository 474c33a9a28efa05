"""A lab host behind a network link shaped by the kernel (host var
``lab_link: {mbit: 200, delay_ms: 10}``), as a host across a WAN is.

The host gets its own network namespace and address (its ``ssh_host``,
10.77.x.y); the controller and the lab's cache are at GATEWAY on the
machine's side. Between them, a pair of TUN devices: the kernel's TCP runs
end to end, and each direction leaves through a TBF qdisc at the link's
rate (the kernel's shaper, its queue in the kernel). The propagation delay
is a delay line that holds each packet DELAY before handing it on: this
machine's kernel has no netem (nor fq, which honours departure times), so
the one thing the kernel cannot do here is done per packet, never per byte
stream. MTU 64 KiB, as loopback's. Removed whole by down(): the namespace,
both devices and the delay line. Nothing is put on the machine's own
devices: GATEWAY is every link's machine-side address (as a PPP server's
is on each of its links), so it is there while any link is.

The delay line is delayline.py, a process of its own per link.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fruixops.errors import UserError

GATEWAY = "10.77.0.1"
MTU = 65535


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _tc(*args):
    subprocess.run(["tc", *args], check=True, capture_output=True, text=True)


def module_env():
    """The environment in which `python -m fruixops.lab...` runs this very
    checkout's lab (not another one an editable install points at)."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def names(host):
    """(netns, machine-side device, host-side device) of a linked host."""
    port = host.var("ssh_port", 22)
    return f"fruixops-{port}", f"fxr{port}", f"fxh{port}"


def tbf(dev, mbit, delay_ms, netns=None):
    """The link's rate on *dev*'s egress: a token bucket of two 64 KiB
    packets, a queue of a bandwidth-delay product (at least 256 KiB)."""
    rate = mbit * 1e6 / 8
    limit = max(int(rate * 2 * delay_ms / 1000), 256 << 10)
    pre = ["-n", netns] if netns else []
    _tc(*pre, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
        "burst", str(2 * (MTU + 1)), "limit", str(limit))


def _pidfile(lab, host):
    return lab.host_dir(host.name) / "link.pid"


def up(lab, host):
    """Make the host's namespace and link; returns the namespace's name."""
    spec = host.var("lab_link")
    addr = host.var("ssh_host")
    if not isinstance(spec.get("mbit"), (int, float)) or spec["mbit"] <= 0 or \
            not isinstance(spec.get("delay_ms", 0), (int, float)) or spec.get("delay_ms", 0) < 0:
        raise UserError(f"lab host {host.name}: lab_link must say mbit (> 0) and may say "
                        f"delay_ms (>= 0), not {spec!r}")
    if addr in (None, "127.0.0.1", "localhost"):
        raise UserError(f"lab host {host.name}: a host behind lab_link needs its own "
                        "ssh_host address (10.77.x.y, not 127.0.0.1)")
    ns, rdev, hdev = names(host)
    if _pidfile(lab, host).exists():
        down(lab, host)
    _ip("netns", "add", ns)
    proc = subprocess.Popen([sys.executable, "-m", "fruixops.lab.delayline", ns, rdev, hdev,
                             str(spec.get("delay_ms", 0))],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd="/", text=True, env=module_env())
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"lab host {host.name}: its link's delay line did not start")
    _pidfile(lab, host).write_text(f"{proc.pid}\n")
    _ip("addr", "add", GATEWAY, "peer", addr, "dev", rdev)
    _ip("link", "set", rdev, "mtu", str(MTU), "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "addr", "add", f"{addr}/32", "dev", hdev)
    _ip("-n", ns, "link", "set", hdev, "mtu", str(MTU), "up")
    _ip("-n", ns, "route", "add", "default", "dev", hdev, "src", addr)
    tbf(rdev, spec["mbit"], spec.get("delay_ms", 0))
    tbf(hdev, spec["mbit"], spec.get("delay_ms", 0), netns=ns)
    return ns


def down(lab, host):
    """Remove the host's link: its delay line (and with it both devices) and
    its namespace. The host must be off (nothing of it left in the namespace)."""
    ns, _, _ = names(host)
    try:
        pid = int(_pidfile(lab, host).read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)
    except (OSError, ValueError):
        pass
    _pidfile(lab, host).unlink(missing_ok=True)
    _ip("netns", "del", ns, check=False)


# Shared links -----------------------------------------------------------------------

SHARED = "fxlabshared"


def share(hosts, uplink_mbit, cache_mbit, cache_port):
    """The controller's uplink and the cache's link, each shared by every
    linked host in *hosts*: what leaves the machine for any of them goes
    through one IFB device first, where HTB gives the cache's replies (from
    *cache_port*) cache_mbit and everything else (SSH: the controller)
    uplink_mbit; then through the host's own link."""
    unshare(hosts)
    _ip("link", "add", SHARED, "type", "ifb")
    _ip("link", "set", SHARED, "up")
    _tc("qdisc", "add", "dev", SHARED, "root", "handle", "1:", "htb", "default", "10")
    for cls, mbit in (("1:10", uplink_mbit), ("1:20", cache_mbit)):
        _tc("class", "add", "dev", SHARED, "parent", "1:", "classid", cls, "htb",
            "rate", f"{mbit}mbit", "burst", str(2 * (MTU + 1)), "cburst", str(2 * (MTU + 1)),
            "quantum", str(MTU + 1))
    # Each class's queue: a few of the links' 64 KiB packets per host. A
    # short one (the IFB's 32 packets) drops the many flows' windows of one
    # or two packets into timeouts, which no real link of 1500-byte packets
    # would do.
    for n, cls in ((10, "1:10"), (20, "1:20")):
        _tc("qdisc", "add", "dev", SHARED, "parent", cls, "handle", f"{n}:", "pfifo",
            "limit", str(64 + 4 * len(hosts)))
    _tc("filter", "add", "dev", SHARED, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
        "match", "ip", "sport", str(cache_port), "0xffff", "flowid", "1:20")
    for host in hosts:
        rdev = names(host)[1]
        _tc("qdisc", "add", "dev", rdev, "clsact")
        _tc("filter", "add", "dev", rdev, "egress", "protocol", "ip", "u32", "match", "u32",
            "0", "0", "action", "mirred", "egress", "redirect", "dev", SHARED)


def unshare(hosts):
    """Undo share(): the hosts' own links stay as they were."""
    for host in hosts:
        subprocess.run(["tc", "qdisc", "del", "dev", names(host)[1], "clsact"],
                       capture_output=True)
    _ip("link", "del", SHARED, check=False)
