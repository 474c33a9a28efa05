"""What decides a lab host's next boot, as FreeBSD's loader decides it, and
what the loader loaded: the kernel `kenv kernelname` names is compared with
the booted generation's (status, reboot, trial, confirm); loader files that
override or suppress fruix.conf are reported with their file and line; a
fruix.conf the receiver cannot read as the loader does is never rewritten;
one-shots are pending as config.lua applies them, written 0600, and a trial
is kept by gc even where its one-shot cannot be seen (ZFS); a store the
loader cannot reach is said before a deploy."""

import re
import json
import stat

import pytest

from conftest import host_variant, inv_cmd, openssh
from faultlab import generation_loader_vars
from fruixops.rollout import boot, deploy, lifecycle, push
from fruixops.remote.connection import HostConnection
from fruixops.controller import Controller
from fruixops.rollout.switch import deployer_identity


def disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def state_of(ctl, host):
    hc = HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()
    try:
        return boot.state(hc)
    finally:
        hc.close()


def push_trial(ctl, host, base):
    """A trial recorded and set as the one-shot, not yet booted."""
    m, data, sig = ctl.make_manifest(host, base)
    hc = HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()
    try:
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        gen, _ = push.push(hc, m, data, sig, state.missing, ctl.builder.store,
                           deployer_identity(), trial=True)
    finally:
        hc.close()
    return gen


@pytest.fixture
def installed(fresh):
    def _installed(host):
        ctl = fresh(host)
        r = deploy.deploy(ctl, host, "stable-default", reboot=True)
        assert (r.generation, r.booted_generation) == (1, 1)
        return ctl
    return _installed


# -- 1. booted means the loaded kernel too ---------------------------------

def stock_kernel_wins(ctl, host):
    """loader.conf.local's kernel= (read after fruix.conf) wins: the loader
    loads /boot/kernel/kernel whatever fruixops selects."""
    (disk(ctl, host) / "boot/loader.conf.local").write_text('kernel="kernel"\n')


def stock_kernel_in_the_one_shot(ctl, host):
    """A pending nextboot.conf's kernel= rewritten to the stock kernel."""
    nb = disk(ctl, host) / "boot/nextboot.conf"
    if nb.exists():
        nb.write_text(re.sub(r'(?m)^kernel=.*$', 'kernel="kernel"', nb.read_text()))


def test_status_reports_a_loaded_kernel_that_is_not_the_generations(installed):
    """Needs the lab's kenv to answer kernelname (the lab loader's part)."""
    ctl = installed("web1")
    want = generation_loader_vars(disk(ctl, "web1"), 1)["kernel"] + "/kernel"
    assert state_of(ctl, "web1").booted_kernel == want
    stock_kernel_wins(ctl, "web1")
    out = inv_cmd(ctl.inventory.path, "reboot", "--host", "web1", check=True).stdout
    mismatch = f"the loader loaded kernel /boot/kernel/kernel, not generation 1's ({want})"
    assert f"web1: warning: {mismatch}" in out
    doc = json.loads(inv_cmd(ctl.inventory.path, "status", "--host", "web1", "--json",
                             check=True).stdout)
    assert (doc["booted"]["generation"], doc["booted"]["kernel"]) == (1, "/boot/kernel/kernel")
    assert (doc["booted"]["kernel_expected"], doc["booted"]["kernel_mismatch"]) == (want, mismatch)
    out = inv_cmd(ctl.inventory.path, "status", "--host", "web1", check=True).stdout
    assert "kernel:    /boot/kernel/kernel" in out and f"warning:   {mismatch}" in out


def test_confirm_refuses_a_trial_booted_on_another_kernel(installed):
    """Needs the lab's kenv to answer kernelname (the lab loader's part)."""
    ctl = installed("web2")
    gen = push_trial(ctl, "web2", "stable-canary")
    want = generation_loader_vars(disk(ctl, "web2"), gen)["kernel"] + "/kernel"
    # nextboot.conf is read last (config.lua's checkNextboot): only an edit
    # of the one-shot itself makes it boot another kernel.
    stock_kernel_in_the_one_shot(ctl, "web2")
    hc = HostConnection(ctl.inventory.host("web2"), ctl.inventory.settings.known_hosts).open()
    boot.reboot(hc).close()
    assert state_of(ctl, "web2").booted_generation == gen       # the one-shot, on /boot/kernel
    r = openssh(ctl, "web2", "sh", "/var/lib/fruix/fruixops/receiver", "confirm", str(gen))
    assert r.returncode == 2
    assert r.stderr.decode().strip() == (
        f"refused: generation {gen} booted kernel /boot/kernel/kernel, not its own ({want}); "
        "not confirmed")
    assert state_of(ctl, "web2").default == 1


def test_a_trial_on_the_stock_kernel_fails_and_is_not_confirmed(installed, monkeypatch):
    """The one-shot's kernel= edited to the stock kernel between the switch
    and the reboot (by another tool, an administrator): the trial boots
    generation 2 on /boot/kernel/kernel, which is not its own."""
    ctl = installed("web1")
    real_reboot = boot.reboot

    def reboot_after_an_edit(hc, *args, **kwargs):
        stock_kernel_in_the_one_shot(ctl, "web1")
        return real_reboot(hc, *args, **kwargs)
    monkeypatch.setattr(boot, "reboot", reboot_after_an_edit)
    with pytest.raises(deploy.DeployFailed, match="kernel .*the loader loaded kernel "
                                                  "/boot/kernel/kernel"):
        deploy.deploy(ctl, "web1", "stable-canary", trial=True)
    state = state_of(ctl, "web1")
    assert (state.default, state.current) == (1, 1)


# -- 2. what decides the next boot ------------------------------------------

def test_loader_conf_dirs_in_loader_conf_is_reported_by_plan_and_status(installed):
    ctl = installed("web2")
    (disk(ctl, "web2") / "boot/loader.conf").write_text('loader_conf_dirs="/boot/mine.d"\n')
    line = ('/boot/loader.conf:1: sets loader_conf_dirs="/boot/mine.d", changing the files the '
            'loader reads: /boot/loader.conf.d/fruix.conf is never read')
    assert state_of(ctl, "web2").loader_overrides == [line]
    out = inv_cmd(ctl.inventory.path, "status", "--host", "web2", check=True).stdout
    assert f"warning:   loader file {line}" in out
    out = inv_cmd(ctl.inventory.path, "plan", "--host", "web2", "--base", "stable-canary",
                  check=True).stdout
    assert f"warning: loader file {line}" in out


def test_an_unparseable_fruix_conf_is_never_overwritten(installed):
    """fruix.conf with a $ expansion: the loader's answer is not what the
    receiver reads, so the locked commands leave it and say why."""
    ctl = installed("web2")
    conf = disk(ctl, "web2") / "boot/loader.conf.d/fruix.conf"
    v = generation_loader_vars(disk(ctl, "web2"), 1)
    text = "".join(f'{k}="{val}"\n' for k, val in v.items() if k != "fruix.generation")
    text += 'g="1"\nfruix.generation="$g"\n'
    conf.write_text(text)
    report = lifecycle.gc(ctl, "web2", 5)           # a locked command: reconcile runs
    assert report is not None and conf.read_text() == text
    assert ("/boot/loader.conf.d/fruix.conf:5: a value the loader expands ($ or a backslash)"
            in state_of(ctl, "web2").loader_overrides)
    with pytest.raises(deploy.DeployFailed, match="fruix.conf:5: a value the loader expands"):
        deploy.deploy(ctl, "web2", "stable-canary")
    assert conf.read_text() == text


# -- 3. trials as the loader applies them -----------------------------------

def test_a_one_shot_not_starting_NO_is_pending_and_nextboot_enable_NO_disables_it(installed):
    ctl = installed("web2")
    gen = push_trial(ctl, "web2", "stable-canary")
    nb = disk(ctl, "web2") / "boot/nextboot.conf"
    assert stat.S_IMODE(nb.stat().st_mode) == 0o600          # as nextboot(8) writes it
    lines = nb.read_text().splitlines()
    nb.write_text("\n".join(['nextboot_enable="MAYBE"'] + lines[1:]) + "\n")
    assert state_of(ctl, "web2").next_boot == gen            # config.lua applies it
    (disk(ctl, "web2") / "boot/loader.conf").write_text('nextboot_enable="NO"\n')
    state = state_of(ctl, "web2")
    assert state.next_boot is None
    assert state.loader_overrides == [
        '/boot/loader.conf:1: sets nextboot_enable="NO": no one-shot is applied']


def test_gc_keeps_an_unconfirmed_trial_whose_one_shot_it_cannot_see(installed):
    """On ZFS the one-shot is in the pool's label: no nextboot.conf. The
    receiver's record of the trial keeps its generation until confirmed."""
    ctl = installed("db2")
    deploy.deploy(ctl, "db2", "stable-canary")               # 2, the default
    gen = push_trial(ctl, "db2", "stable-default")           # 3, a trial
    (disk(ctl, "db2") / "boot/nextboot.conf").unlink()       # invisible, as on ZFS
    state = state_of(ctl, "db2")
    assert (state.next_boot, state.trial) == (None, gen)
    report = lifecycle.gc(ctl, "db2", 0)
    assert report.kept[gen] == "trial"
    assert (disk(ctl, "db2") / f"var/lib/fruix/system/generations/{gen}").is_dir()
    deploy.rollback(ctl, "db2", to=1)                        # a new default ends the trial
    assert state_of(ctl, "db2").trial is None


# -- 4. the kernel must be reachable by the loader --------------------------

def test_the_lab_store_is_on_the_boot_file_system(installed):
    ctl = installed("web1")
    assert state_of(ctl, "web1").boot_fs == "same"


def test_plan_warns_when_the_store_is_not_on_the_boot_file_system(lab, project, fresh):
    """A host whose /frx is a file system of its own (here a tmpfs): FreeBSD's
    loader could not read a generation's kernel from it."""
    fresh("db2")
    split = host_variant(project, "split-frx.yaml", "db2", "lab_frx_tmpfs_mb: 64")
    ctl = Controller(split)
    host = ctl.inventory.host("db2")
    lab.reset([host])
    lab.up([host])
    try:
        out = inv_cmd(split, "bootstrap", "--host", "db2", check=True).stdout
        assert "warning: /frx/store is not on /boot's file system" in out
        out = inv_cmd(split, "plan", "--host", "db2", "--base", "stable-default",
                      check=True).stdout
        assert ("warning: /frx/store is not on /boot's file system: FreeBSD's loader reads "
                "kernels only from the boot file system") in out
        assert state_of(ctl, "db2").boot_fs.startswith("differs ")
        # A deploy is refused before anything is sent; the operator who knows
        # better says so.
        with pytest.raises(deploy.DeployFailed, match="not on /boot's file system.*refused"):
            deploy.deploy(ctl, "db2", "stable-default")
        assert not [p for p in (lab.disk("db2") / "boot/loader.conf.d").glob("fruix.conf")]
        ok = Controller(split)
        ok.inventory.host("db2").vars["boot_fs_check"] = False
        assert deploy.deploy(ok, "db2", "stable-default").generation == 1
    finally:
        fresh("db2")                # back to the test inventory's db2
