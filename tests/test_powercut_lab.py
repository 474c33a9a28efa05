"""Power cuts that lose what was not flushed (issue 13). db2's disk is an ext4
image here, loop-mounted as the host's root: a power cut keeps what the disk
had received and drops the page cache, as a machine without a battery-backed
disk does. A deploy that said it succeeded must survive a cut at any moment
after it: the new generation boots, every item matches its listing."""

import os
import random
import time

import pytest

from faultlab import check_host, loader_default
from fruixops.rollout import boot, deploy
from fruixops.inventory import model as inventory
from fruixops.remote.connection import HostConnection
from fruixops.controller import Controller

HOST = "db2"


@pytest.fixture
def cut_lab(lab, project):
    text = project.read_text().replace(f"{HOST}: {{ssh_port:", f"{HOST}: {{lab_disk_mb: 128, ssh_port:")
    path = project.with_name("powercut.yaml")
    path.write_text(text)
    ctl = Controller(path)
    host = ctl.inventory.host(HOST)
    lab.reset([host])
    lab.up([host])
    try:
        yield ctl, host, lab
    finally:
        normal = inventory.load(project).host(HOST)
        lab.reset([normal])
        lab.up([normal])


def disk(ctl):
    return (ctl.inventory.path.parent / "../.lab" / HOST / "root").resolve()


def test_the_labs_power_cut_loses_what_was_not_flushed(cut_lab):
    """The model itself: without it, the test below would prove nothing."""
    ctl, host, lab = cut_lab
    hc = HostConnection(host, ctl.inventory.settings.known_hosts).open()
    try:
        hc.check("echo written > /var/lib/fruix/unflushed; "
                 "echo written > /var/lib/fruix/flushed; sync /var/lib/fruix/flushed")
    finally:
        hc.close()
    lab.power_cut(host)
    d = disk(ctl)
    assert (d / "var/lib/fruix/flushed").read_text() == "written\n"
    lost = d / "var/lib/fruix/unflushed"
    assert not lost.exists() or lost.read_text() != "written\n"


def test_a_deploy_that_succeeded_survives_a_power_cut_at_any_moment_after(cut_lab):
    ctl, host, lab = cut_lab
    d = disk(ctl)
    rng = random.Random(13)
    trials = max(2, int(os.environ.get("FRUIXOPS_FAULT_TRIALS", "20")) // 5)
    bases = ["stable-default", "stable-canary"]
    for i in range(trials):
        r = deploy.deploy(ctl, HOST, bases[i % 2], reboot=(i == 0))
        delay = rng.uniform(0, 1.5)
        time.sleep(delay)           # the moment of the cut (the fault), not a wait
        lab.power_cut(host)
        assert loader_default(d) == r.generation, f"trial {i}: cut {delay:.2f}s after success"
        check_host(d)
        hc = HostConnection(host, ctl.inventory.settings.known_hosts).open()
        try:
            state = boot.state(hc)
        finally:
            hc.close()
        assert (state.booted_generation, state.booted) == (r.generation, r.closure)
        ok, lines = deploy.verify(ctl, HOST)
        assert ok, lines
        again = deploy.deploy(ctl, HOST, bases[i % 2])
        assert not again.changed and again.generation == r.generation
    print(f"\npower cut after a successful deploy: {trials} trials, the new generation "
          "booted and verified every time")
