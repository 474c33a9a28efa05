"""Faults against the lab: the controller killed at random points of a deploy,
the connection cut mid-stream, the host power-cycled mid-deploy, a full disk,
two deploys at once. After each: no incomplete item is visible, `current`
names a complete generation, every item matches what it recorded, and the
next deploy completes and cleans up what was left.

FRUIXOPS_FAULT_TRIALS sets the number of controller kills (default 20; e.g.
`make faults` runs 100)."""

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import host_variant, ROOT
from faultlab import check_host, fault_inventory, leftovers, wait_lock_free_or_stale
from fruixops.rollout import deploy
from fruixops.inventory import model as inventory
from fruixops.rollout import push
from fruixops.remote import receiver
from fruixops.remote.connection import HostConnection
from fruixops.controller import Controller
from fruixops.errors import HostError, HostUnreachable

TRIALS = int(os.environ.get("FRUIXOPS_FAULT_TRIALS", "20"))
HOST = "web2"      # a root host: the fault harness kills receivers with pkill

CHILD = """
import sys, time
from fruixops.controller import Controller
from fruixops.rollout import deploy
from fruixops.rollout.events import Events
ctl = Controller(sys.argv[1])
prepared = deploy.prepare(ctl, sys.argv[2], sys.argv[3])
print("go", flush=True)
t0 = time.monotonic()
deploy.deploy(ctl, sys.argv[2], events=Events(), prepared=prepared)
print(f"done {time.monotonic() - t0:.3f}", flush=True)
"""


@pytest.fixture(scope="module")
def faults(lab, project):
    path = fault_inventory(project, TRIALS + 8)
    ctl = Controller(path)
    for name in ctl.inventory.bases:           # build every closure once, up front
        if name.startswith("fault-"):
            ctl.build(name, HOST)
    host = ctl.inventory.host(HOST)
    lab.reset([host])
    lab.up([host])
    lab.install(ctl, [host])
    return ctl, lab.disk(HOST), iter(range(TRIALS + 8))


def next_base(faults):
    return f"fault-{next(faults[2]):02d}"


def spawn(ctl, base):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ctl.inventory.path), HOST, base],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "go", proc.stderr.read()
    return proc


def host_conn(ctl):
    return HostConnection(ctl.inventory.host(HOST), ctl.inventory.settings.known_hosts).open()


def test_controller_killed_at_random_points(faults, capsys):
    ctl, disk, _ = faults
    # Baseline: how long a whole deploy of one fault closure takes here.
    proc = spawn(ctl, next_base(faults))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    duration = float(out.split()[-1])
    rng = random.Random(20261126)
    completed = interrupted = 0
    hc = host_conn(ctl)
    try:
        for i in range(TRIALS):
            gens_before = len(list((disk / "var/lib/fruix/system/generations").glob("[0-9]*")))
            offset = duration * (i + rng.random()) / TRIALS * 1.1
            proc = spawn(ctl, next_base(faults))
            time.sleep(offset)                  # the fault's timing, not a wait for a result
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            wait_lock_free_or_stale(hc)
            check_host(disk)
            gens_after = len(list((disk / "var/lib/fruix/system/generations").glob("[0-9]*")))
            if gens_after > gens_before:
                completed += 1
            else:
                interrupted += 1
    finally:
        hc.close()
    # The next deploy completes and removes whatever the killed ones left.
    r = deploy.deploy(ctl, HOST, next_base(faults))
    assert r.changed
    current = check_host(disk)
    assert current == r.generation and leftovers(disk) == []
    ok, report = deploy.verify(ctl, HOST)
    assert ok, report
    with capsys.disabled():
        print(f"\ncontroller SIGKILL: {TRIALS} trials over 0..{duration * 1.1:.2f}s "
              f"({interrupted} interrupted mid-deploy, {completed} after the switch), "
              "0 incomplete items visible, 0 corrupt, next deploy ok")
    assert interrupted >= TRIALS // 4         # the offsets really hit the middle of deploys


class GatedDeploy:
    """A real deploy whose first item stops streaming after its first chunk
    until released: the host's receiver holds the lock and waits mid-stream,
    so a fault can be injected at exactly that point."""

    def __init__(self, ctl, base, deployer="alice@console"):
        m, self.data, self.sig = deploy.prepare(ctl, HOST, base)
        self.store = ctl.builder.store
        self.hc = host_conn(ctl)
        state = push.plan(self.hc, self.data, self.sig, ctl.trusted_keys())
        self.items = [it for it in m.items if str(it.path) in state.missing]
        assert self.items, "nothing to send"
        self.gate, self.holding, self.result = threading.Event(), threading.Event(), {}
        self.command = receiver.command("receive", "--deployer", deployer)
        self.thread = threading.Thread(target=self._run)

    def _chunks(self, it, gated):
        with open(self.store.archive(it.path), "rb") as f:
            first = True
            while chunk := f.read(1 << 16):
                yield chunk
                if gated and first:
                    first = False
                    self.holding.set()
                    self.gate.wait(60)

    def _run(self):
        try:
            session = self.hc.session(self.command)
            session.send(push._opening(self.data, self.sig))
            ready = session.readline()
            assert ready and ready.startswith("ready "), session.finish().err
            _, pid, token = ready.split()
            for i, it in enumerate(self.items):
                r = self.hc.run(receiver.command("item", pid, it.path.base),
                                stdin=itertools.chain([f"token {token}\n".encode()],
                                                      self._chunks(it, gated=(i == 0))))
                if r.status != 0:
                    self.result["r"] = r
                    session.finish()
                    return
            session.send(push.COMMIT)
            self.result["r"] = session.finish()
        except HostUnreachable as exc:
            self.result["error"] = exc
        finally:
            self.holding.set()

    def __enter__(self):
        self.thread.start()
        assert self.holding.wait(30)
        return self

    def __exit__(self, *exc):
        self.gate.set()
        self.thread.join(60)
        self.hc.close()


def _receiver_pid(disk, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        for tmp in (disk / "frx/store").glob(".fruixops-tmp.*"):
            return int(tmp.name.rsplit(".", 1)[1])
        assert time.monotonic() < deadline, "no receiver started receiving"
        time.sleep(0.005)


def test_connection_cut_mid_stream(faults):
    ctl, disk, _ = faults
    before = check_host(disk)
    with GatedDeploy(ctl, next_base(faults)) as gd:
        pid = _receiver_pid(disk)
        hc = host_conn(ctl)
        try:
            # Kill the sshd session process serving the receiver (its parent,
            # or its grandparent when a shell sits between them).
            hc.check(f"p=$(ps -o ppid= -p {pid} | tr -d ' '); "
                     "case $(ps -o comm= -p $p) in sshd*) ;; *) p=$(ps -o ppid= -p $p | tr -d ' ');; "
                     "esac; kill -9 $p")
            gd.gate.set()
            gd.thread.join(60)
            wait_lock_free_or_stale(hc)
        finally:
            hc.close()
    assert "error" in gd.result or gd.result["r"].status != 0   # the controller saw it fail
    assert check_host(disk) == before                           # boot selection unchanged
    r = deploy.deploy(ctl, HOST, next_base(faults))
    assert r.changed and check_host(disk) == r.generation and leftovers(disk) == []


def test_host_power_cycled_mid_deploy(faults, lab):
    ctl, disk, _ = faults
    before = check_host(disk)
    with GatedDeploy(ctl, next_base(faults)) as gd:
        _receiver_pid(disk)
        lab.power_cycle(HOST)
        gd.gate.set()
        gd.thread.join(60)
    assert "error" in gd.result or gd.result["r"].status != 0
    lab.wait_ssh(ctl.inventory.host(HOST), 30)
    assert check_host(disk) == before
    state = deploy.status(ctl, HOST)
    assert state.booted == state.current_closure          # it booted what it had
    r = deploy.deploy(ctl, HOST, next_base(faults), reboot=True)
    assert r.booted == r.closure and leftovers(disk) == []


def test_two_deploys_at_once_one_waits_for_nobody(faults):
    """The second deploy fails at once, naming the holder; the first completes."""
    ctl, disk, _ = faults
    first_base, second_base = next_base(faults), next_base(faults)
    with GatedDeploy(ctl, first_base) as gd:
        _receiver_pid(disk)      # the first receiver holds the lock (taken before its temp dir)
        t0 = time.monotonic()
        with pytest.raises(HostError, match=r"locked: another deploy holds this host "
                                            r"\(pid=\d+,boot=[\d.]+,since=\d+,by=alice@console"):
            deploy.deploy(ctl, HOST, second_base)
        refused_in = time.monotonic() - t0
    assert gd.result["r"].status == 0, gd.result["r"].err
    assert "generation" in gd.result["r"].out
    gen = check_host(disk)
    assert deploy.status(ctl, HOST).gen(gen).base == first_base
    assert refused_in < 5


def test_disk_full_leaves_nothing_partial(lab, project, faults):
    ctl0, _, _ = faults
    tiny = host_variant(project, "tiny.yaml", "db2", "lab_frx_tmpfs_mb: 16, boot_fs_check: false")
    ctl = Controller(tiny)
    host = ctl.inventory.host("db2")
    lab.reset([host])
    lab.up([host])
    try:
        first = deploy.deploy(ctl, "db2", "stable-default")
        hc = HostConnection(host, ctl.inventory.settings.known_hosts).open()
        try:
            # Full to the last block: the canary is mostly files mon1 holds
            # already, and even its delta must not fit.
            hc.run("dd if=/dev/zero of=/frx/filler bs=64k 2>/dev/null")
            before = hc.check("ls -a /frx/store; readlink /var/lib/fruix/system/current; "
                              "ls /var/lib/fruix/system/generations").out
            with pytest.raises(HostError, match="disk full on /frx/store"):
                deploy.deploy(ctl, "db2", "stable-canary")
            after = hc.check("ls -a /frx/store; readlink /var/lib/fruix/system/current; "
                             "ls /var/lib/fruix/system/generations").out
            assert after == before               # nothing partial, selection unchanged
            hc.check("rm /frx/filler")
        finally:
            hc.close()
        again = deploy.deploy(ctl, "db2", "stable-canary")
        assert again.changed and again.generation == first.generation + 1
        ok, report = deploy.verify(ctl, "db2")
        assert ok, report
    finally:
        normal = inventory.load(project).host("db2")
        lab.reset([normal])
        lab.up([normal])
