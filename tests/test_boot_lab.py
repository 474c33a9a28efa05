"""Booting through FreeBSD's loader, on the lab: after every switch,
rollback and confirm, /boot/loader.conf.d/fruix.conf names the current
generation and its kernel; what the loader files say decides the next boot,
even against fruixops's own links; a trial is a one-shot nextboot.conf the
loader consumes; what booted is what `kenv` says; kills never leave the
loader naming an incomplete generation; gc keeps exactly the generations the
loader may boot."""

import json
import os
import random

import pytest

from conftest import inv_cmd
from faultlab import check_host, generation_loader_vars, loader_default, loader_vars
from fruixops.rollout import boot, deploy, lifecycle, push
from fruixops.remote import receiver
from fruixops.remote.connection import HostConnection
from fruixops.rollout.switch import deployer_identity


def disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def connect(ctl, host):
    return HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()


def host_state(ctl, host):
    hc = connect(ctl, host)
    try:
        return boot.state(hc)
    finally:
        hc.close()


def records(d):
    system = d / "var/lib/fruix/system"
    return (os.readlink(system / "current"), (system / "current-generation").read_text().strip())


def assert_default(ctl, host, n):
    """fruix.conf names generation n (and its kernel item); the links and
    Fruix's records follow it."""
    d = disk(ctl, host)
    assert loader_default(d) == n
    assert records(d) == (f"generations/{n}", str(n))


@pytest.fixture
def installed(fresh):
    def _installed(host):
        ctl = fresh(host)
        r = deploy.deploy(ctl, host, "stable-default", reboot=True, install_bootloader=True)
        assert (r.generation, r.booted_generation) == (1, 1)
        return ctl
    return _installed


def test_switch_rollback_and_confirm_each_commit_to_fruix_conf(installed):
    ctl = installed("web1")
    assert_default(ctl, "web1", 1)
    cand = deploy.deploy(ctl, "web1", "stable-canary")
    assert cand.generation == 2
    assert_default(ctl, "web1", 2)
    state = host_state(ctl, "web1")
    assert (state.booted_generation, state.default, state.current) == (1, 2, 2)
    gen, _ = deploy.rollback(ctl, "web1")
    assert gen == 1
    assert_default(ctl, "web1", 1)
    assert (disk(ctl, "web1") / "var/lib/fruix/system/rollback-generation").read_text() == "2\n"
    gen, _ = deploy.rollback(ctl, "web1", to=2, reboot=True)
    assert_default(ctl, "web1", 2)
    # A trial that passes: the one-shot boots it, confirm makes it the default.
    r = deploy.deploy(ctl, "web1", "stable-default", trial=True)
    assert (r.generation, r.booted_generation) == (3, 3) and not r.rolled_back
    assert_default(ctl, "web1", 3)
    nextboot = disk(ctl, "web1") / "boot/nextboot.conf"
    assert not nextboot.exists() or nextboot.read_text().startswith('nextboot_enable="NO"')
    doc = json.loads(inv_cmd(ctl.inventory.path, "status", "--host", "web1", "--json",
                             check=True).stdout)
    booted = doc["booted"]
    kernel = booted.pop("kernel")
    kernel_file = booted.pop("kernel_expected")
    assert kernel_file == loader_vars(disk(ctl, "web1") / "boot/loader.conf.d/fruix.conf")[
        "kernel"] + "/kernel"
    # The loaded kernel is the generation's (or unknown, kenv without kernelname).
    assert booted.pop("kernel_mismatch") is None and kernel in (None, kernel_file)
    assert booted == {"generation": 3, "closure": r.closure, "base": "stable-default",
                      "version_label": "15.0-STABLE"}
    assert doc["default"] == doc["current"] == booted and doc["next_boot"] is None


def test_junk_in_kenv_fruix_system_reads_as_booted_unknown(installed):
    """A trailing / in fruix.system (a loader variable typed by hand in
    loader.conf.local, so kenv says it after the boot) is no sign of a
    compromised host: reboot and status say booted unknown, the value shown
    escaped, and deploys go on."""
    ctl = installed("web1")
    closure = host_state(ctl, "web1").booted
    local = disk(ctl, "web1") / "boot/loader.conf.local"

    def boot_with(value):
        local.write_text(f'fruix.system="{value}"\n')
        proc = inv_cmd(ctl.inventory.path, "reboot", "--host", "web1")
        assert proc.returncode == 0, proc.stderr
        assert "web1: booted unknown (kenv fruix.system is '" in proc.stdout, proc.stdout
        proc = inv_cmd(ctl.inventory.path, "status", "--host", "web1")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert f"booted:    unknown (kenv fruix.system is '{closure}/')" in boot_with(closure + "/")
    doc = json.loads(inv_cmd(ctl.inventory.path, "status", "--host", "web1", "--json",
                             check=True).stdout)
    assert doc["booted"]["closure"] is None and doc["booted"]["generation"] == 1
    assert doc["booted"]["unknown"] == f"kenv fruix.system is '{closure}/'"
    r = inv_cmd(ctl.inventory.path, "deploy", "--host", "web1", "--base", "stable-canary")
    assert r.returncode == 0, r.stderr
    assert host_state(ctl, "web1").current == 2
    # Other junk, an escape sequence in it, is shown escaped.
    out = boot_with("/frx/store/x\x1b[2J")
    assert "booted:    unknown (kenv fruix.system is '/frx/store/x\\x1b[2J')" in out
    assert "\x1b" not in out


def test_a_hand_edited_fruix_conf_decides_the_next_boot(installed):
    ctl = installed("web2")
    deploy.deploy(ctl, "web2", "stable-canary", reboot=True)
    d = disk(ctl, "web2")
    conf = d / "boot/loader.conf.d/fruix.conf"
    # An administrator points the loader at generation 1 by hand; fruixops's
    # links still say 2.
    conf.write_text("".join(f'{k}="{v}"\n' for k, v in generation_loader_vars(d, 1).items()))
    proc = inv_cmd(ctl.inventory.path, "reboot", "--host", "web2", check=True)
    assert "booted generation 1 " in proc.stdout
    state = host_state(ctl, "web2")
    assert (state.booted_generation, state.default, state.current) == (1, 1, 2)
    assert state.booted == state.gen(1).closure
    # The next command under the host's lock brings the links in line.
    lifecycle.gc(ctl, "web2", 10)
    state = host_state(ctl, "web2")
    assert (state.current, state.rollback) == (1, 2)
    assert records(d) == ("generations/1", "1")


@pytest.mark.parametrize("host,one_shot", [("web2", "nextboot.conf"), ("web3", "nextboot(8)")])
def test_a_trial_whose_kernel_never_boots_comes_back_to_the_default(installed, host, one_shot):
    ctl = installed(host)
    with pytest.raises(deploy.DeployFailed, match="did not come back; power-cycled") as exc:
        deploy.deploy(ctl, host, "broken-canary", trial=True)
    r = exc.value.result
    assert r.rolled_back and (r.generation, r.booted_generation) == (2, 1)
    assert f"one-shot next boot with {one_shot}" in " ".join(r.notes)
    d = disk(ctl, host)
    # The loader consumed the one-shot before the kernel failed: its first line
    # says so, and the default never moved.
    assert (d / "boot/nextboot.conf").read_text().splitlines()[0] == 'nextboot_enable="NO" '
    assert loader_vars(d / "boot/nextboot.conf")["fruix.generation"] == "2"
    assert_default(ctl, host, 1)
    state = host_state(ctl, host)
    assert (state.booted_generation, state.next_boot, state.default) == (1, None, 1)


def test_only_a_booted_trial_can_be_confirmed(installed):
    ctl = installed("db1")
    m, data, sig = ctl.make_manifest("db1", "stable-canary")
    hc = connect(ctl, "db1")
    try:
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        gen, _ = push.push(hc, m, data, sig, state.missing, ctl.builder.store,
                           deployer_identity(), trial=True)
        r = hc.run(hc.receiver("confirm", gen, "tester"))   # db1: through doas
    finally:
        hc.close()
    assert r.status == 2 and "has not booted" in r.err
    state = host_state(ctl, "db1")
    assert (state.next_boot, state.default) == (gen, 1)        # the one-shot is still pending
    assert_default(ctl, "db1", 1)


def test_receiver_killed_at_random_points_of_a_switch(installed):
    """SIGKILL of the receiver at random points of rollbacks: fruix.conf always
    names a complete generation, and the next command repairs the links."""
    ctl = installed("web2")
    deploy.deploy(ctl, "web2", "stable-canary")
    d = disk(ctl, "web2")
    rng = random.Random(11)
    trials = int(os.environ.get("FRUIXOPS_FAULT_TRIALS", "20"))
    hc = connect(ctl, "web2")
    seen = set()
    try:
        for _ in range(trials):
            delay = rng.uniform(0, 0.15)
            hc.run(f"{receiver.command('rollback')} >/dev/null 2>&1 & p=$!; "
                   f"sleep {delay:.3f}; kill -9 $p 2>/dev/null; wait $p; exit 0")
            seen.add(loader_default(d))            # complete, and names its own kernel
            check_host(d)
    finally:
        hc.close()
    assert seen <= {1, 2}
    gen, state = deploy.rollback(ctl, "web2")
    assert_default(ctl, "web2", gen)
    assert state.rollback is not None and state.rollback != state.current
    print(f"\nreceiver SIGKILL during rollback: {trials} trials, defaults seen {sorted(seen)}")


def test_gc_keeps_exactly_the_booted_generation_not_its_closure_twins(installed):
    ctl = installed("web1")
    for base in ["stable-canary", "stable-default"] * 3:     # generations 2..7, no reboot
        deploy.deploy(ctl, "web1", base)
    state = host_state(ctl, "web1")
    assert state.booted_generation == 1 and (state.current, state.rollback) == (7, 6)
    assert state.gen(3).closure == state.gen(1).closure == state.booted
    report = lifecycle.gc(ctl, "web1", 2)
    assert sorted(report.deleted_generations) == [2, 3, 4, 5]
    assert report.kept == {1: "booted"}
    gens = sorted(int(p.name) for p in (disk(ctl, "web1") / "var/lib/fruix/system/generations")
                  .iterdir() if p.name.isdigit())
    assert gens == [1, 6, 7]


def test_gc_keeps_a_pending_one_shot(installed):
    ctl = installed("db2")
    for base in ["stable-canary", "stable-default"] * 2:      # generations 2..5, no reboot
        deploy.deploy(ctl, "db2", base)
    m, data, sig = ctl.make_manifest("db2", "stable-canary")
    hc = connect(ctl, "db2")
    try:                                # generation 6: a trial not yet booted
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        gen, _ = push.push(hc, m, data, sig, state.missing, ctl.builder.store,
                           deployer_identity(), trial=True)
    finally:
        hc.close()
    assert gen == 6 and host_state(ctl, "db2").next_boot == 6
    report = lifecycle.gc(ctl, "db2", 0)
    assert report.kept == {1: "booted", 5: "default", 6: "next-boot", 4: "rollback"}
    assert sorted(report.deleted_generations) == [2, 3]
    check_host(disk(ctl, "db2"))


def test_a_lock_from_before_a_reboot_is_stale_even_if_its_pid_lives(installed):
    ctl = installed("web2")
    hc = connect(ctl, "web2")
    try:
        # A lock naming a live process, taken in an earlier boot (the pid was
        # reused since): stale. One from this boot: held.
        hc.check("sleep 300 >/dev/null 2>&1 & "
                 "ln -s \"pid=$!,boot=1.000001,since=1,by=alice@ops,cmd=receive\" "
                 "/var/lib/fruix/fruixops/lock")
    finally:
        hc.close()
    r = deploy.deploy(ctl, "web2", "stable-canary")
    assert r.generation == 2
    hc = connect(ctl, "web2")
    try:
        now = boot.boottime(hc)
        hc.check("sleep 300 >/dev/null 2>&1 & "
                 f"ln -s \"pid=$!,boot={now},since=1,by=alice@ops,cmd=receive\" "
                 "/var/lib/fruix/fruixops/lock")
    finally:
        hc.close()
    with pytest.raises(deploy.DeployFailed, match="by=alice@ops"):
        deploy.deploy(ctl, "web2", "stable-default")
    # A reboot (kill -TERM 1 ends every process of the host) releases it.
    deploy.reboot_host(ctl, "web2")
    assert deploy.deploy(ctl, "web2", "stable-default").generation == 3


def test_bootloader_is_reported_and_installed_only_when_asked(fresh):
    ctl = fresh("db1")
    d = disk(ctl, "db1")
    esp = d / "boot/efi/efi/freebsd/loader.efi"
    r = deploy.deploy(ctl, "db1", "stable-default")
    assert any(n.startswith("bootloader: no bootloader is installed") for n in r.notes)
    assert not esp.exists()
    deploy.deploy(ctl, "db1", "stable-default", install_bootloader=True)
    item = [p for p in (d / "frx/store").iterdir() if "bootloader" in p.name][0]
    assert esp.read_bytes() == (item / "boot/loader.efi").read_bytes()
    assert (d / "boot/lua/loader.lua").read_bytes() == (item / "boot/lua/loader.lua").read_bytes()
    # An older loader on the ESP: plan says so; only --install-bootloader
    # replaces it, keeping the old one beside it.
    esp.chmod(0o644)
    esp.write_bytes(b"an older loader.efi")
    change = lifecycle.plan(ctl, "db1", "stable-default")
    assert any("installed bootloader differs" in n for n in change.notes)
    assert esp.read_bytes() == b"an older loader.efi"
    proc = inv_cmd(ctl.inventory.path, "deploy", "--host", "db1", "--install-bootloader",
                   check=True)
    assert esp.read_bytes() == (item / "boot/loader.efi").read_bytes()
    assert (esp.parent / "loader.efi.old").read_bytes() == b"an older loader.efi"
    assert "differs" not in proc.stdout and f"bootloader: installed /frx/store/{item.name}" \
        in proc.stdout
