"""The seed's health checks observe the running host: each passes on a lab
host booted into its system, and each is made to fail on the lab for the
reason it exists (issue 22). Then the services: sshd killed comes back under
shepherd, and a service whose command does not exist fails a trial, which
comes back to the default generation."""

import time

import pytest

from conftest import host_variant, openssh
from fruixops.rollout import checks, deploy
from fruixops.inventory import model as inventory
from fruixops.controller import Controller


def _check(name):
    return next(c for c in checks.BOOT_CHECKS if c.name == name)


def _run(ctl, host, command):
    """A check's command as the receiver runs it (sh -c, as root, from /)."""
    return openssh(ctl, host, f"cd / && /bin/sh -c {_quote(command)}")


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _passes(ctl, host, name):
    """The check passes, retried as it is signed to be (services start in
    the background)."""
    check = _check(name)
    for _ in range(check.retries + 1):
        r = _run(ctl, host, check.command)
        if r.returncode == check.expect_exit:
            return True
        time.sleep(check.delay)      # the check's own signed retry delay
    return False


@pytest.fixture(scope="module")
def booted(lab, project):
    """web1 deployed and rebooted into its system."""
    inv = inventory.load(project)
    lab.reset([inv.host("web1")])
    lab.up([inv.host("web1")])
    ctl = Controller(project)
    r = deploy.deploy(ctl, "web1", "stable-default", reboot=True)
    assert r.booted == r.closure
    return ctl


def test_every_seed_check_passes_on_a_host_booted_into_its_system(booted):
    for check in checks.BOOT_CHECKS:
        assert _passes(booted, "web1", check.name), check.name


def test_pid1_not_shepherd_fails_init_shepherd_pid1(fresh):
    ctl = fresh("db2")            # booted bare: FreeBSD's own init, sshd only
    assert _run(ctl, "db2", "ps -A -o comm= | grep -qx sshd").returncode == 0   # sshd runs...
    assert _run(ctl, "db2", _check("init_shepherd_pid1").command).returncode != 0
    # ...but not under shepherd.
    assert _run(ctl, "db2", _check("sshd_under_shepherd").command).returncode != 0


def test_a_configuration_guile_cannot_load_fails_guile_module_smoke(booted):
    ctl = booted
    command = _check("guile_module_smoke").command
    assert _run(ctl, "web1", command).returncode == 0
    # The same system, its configuration one parenthesis short; then one
    # naming a procedure Shepherd does not have.
    for broken in ("$(sed '$ s/)$//' $real/etc/shepherd/config.scm)",
                   "$(sed 's/make-kill-destructor/make-kill-destroyer/' "
                   "$real/etc/shepherd/config.scm)"):
        setup = ("real=$(readlink /run/current-system) && rm -rf /run/fake && "
                 "mkdir -p /run/fake/etc/shepherd && "
                 f"printf '%s\\n' \"{broken}\" >/run/fake/etc/shepherd/config.scm && "
                 "ln -sfn /run/fake /run/current-system.test")
        assert _run(ctl, "web1", setup).returncode == 0
        fake = command.replace("/run/current-system/", "/run/current-system.test/")
        r = _run(ctl, "web1", fake)
        assert r.returncode != 0, broken
    _run(ctl, "web1", "rm -rf /run/fake /run/current-system.test")


def test_a_prefix_shim_fails_no_compat_shims(booted):
    ctl = booted
    command = _check("no_compat_shims").command
    assert _run(ctl, "web1", command).returncode == 0
    # A store path linked into a prefix directory, as a foreign-distro
    # install would: a bind mount inside the host, not the machine's.
    store = _run(ctl, "web1", "ls -d /frx/store/*-runtime* | head -n 1").stdout.decode().strip()
    setup = (f"mkdir -p /run/shim && ln -sfn {store}/bin/sh /run/shim/fruix-sh && "
             "mount --bind /run/shim /usr/local/bin")
    assert _run(ctl, "web1", setup).returncode == 0
    try:
        assert _run(ctl, "web1", command).returncode != 0
    finally:
        _run(ctl, "web1", "umount /usr/local/bin; rm -rf /run/shim")


def test_activation_not_run_fails_activation_ran(booted):
    ctl = booted
    command = _check("activation_ran").command
    assert _run(ctl, "web1", command).returncode == 0
    saved = _run(ctl, "web1", "cat /run/fruix/activated").stdout.decode()
    _run(ctl, "web1", "rm /run/fruix/activated")
    try:
        assert _run(ctl, "web1", command).returncode != 0
        # Activated for another closure is not activated for this one.
        _run(ctl, "web1", "echo 'activated /frx/store/x' >/run/fruix/activated")
        assert _run(ctl, "web1", command).returncode != 0
    finally:
        _run(ctl, "web1", f"printf '%s' {_quote(saved)} >/run/fruix/activated")


def test_sshd_killed_comes_back_under_shepherd(booted):
    ctl = booted
    main = r"herd status sshd | sed -En 's/^ *(Running value is|Main PID:) *([0-9]+).*/\2/p'"
    before = _run(ctl, "web1", main).stdout.decode().strip()
    assert before.isdigit()
    _run(ctl, "web1", f"kill {before}")
    deadline = time.monotonic() + 15
    after = ""
    while time.monotonic() < deadline:
        r = _run(ctl, "web1", main)
        after = r.stdout.decode().strip()
        if r.returncode == 0 and after.isdigit() and after != before:
            break
        time.sleep(0.2)            # polling for the respawn, bounded by the deadline
    assert after.isdigit() and after != before
    assert _passes(ctl, "web1", "sshd_under_shepherd")


def test_a_service_whose_command_does_not_exist_fails_the_trial(fresh, project):
    ctl = fresh("web2")
    first = deploy.deploy(ctl, "web2", "stable-default", reboot=True)
    # web2 declares a service whose daemon is not installed.
    broken = host_variant(project, "lab-broken.yaml", "web2",
                          "services: [sshd, {name: ghost, command: /usr/local/sbin/ghostd}]")
    try:
        ctl = Controller(broken)
        with pytest.raises(deploy.DeployFailed) as failed:
            deploy.deploy(ctl, "web2", "stable-canary", trial=True,
                          checks=checks.BOOT_CHECKS)
        assert "service_ghost" in str(failed.value), failed.value
        state = deploy.status(ctl, "web2")
        assert state.booted_generation == first.generation
        assert state.default == first.generation
    finally:
        broken.unlink()
