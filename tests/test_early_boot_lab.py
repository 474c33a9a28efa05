"""The lab's model of a FreeBSD host's early boot (docs/host-contract.md,
"How the lab models the early boot"): a lab host boots with its root file
system read-only, as the kernel mounts it; the lab's /etc/rc (rc(8)) reads
rc.conf through /etc/defaults/rc.conf's source_rc_confs, remounts the root
read-write, sets the hostname, configures the network, and stops the boot
naming the step that failed.

Each test boots web2 from its disk with a small stand-in for a Fruix
system's boot/init (init_exec, set in /boot/loader.conf as an operator
could): it records what it can write before and after /etc/rc, runs
`/bin/sh /etc/rc autoboot`, and execs the lab's stub shepherd (sshd only).
"""

import hashlib
import os
import socket
import tempfile
import time

import pytest

from conftest import wait_until, openssh
from fruixops.errors import UserError

HOST = "web2"
SYSTEM = "/frx/store/" + "0" * 64 + "-fruix-system-early-boot"
HOOK = 'rc_conf_files="$rc_conf_files /run/current-system/etc/rc.conf"'

# Steps 1-3 of a Fruix system's boot/init (fruixops/system/build.py, hand_over), with
# probes of what is writable around /etc/rc.
FIXTURE_INIT = """\
#!/bin/sh
PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin
probe() {
    for mp in / /frx /var/lib/fruix /boot /root /etc; do
        if touch "$mp/.early-boot-probe" 2>/dev/null; then
            rm -f "$mp/.early-boot-probe"; echo "$1 $mp writable"
        else
            echo "$1 $mp read-only"
        fi
    done >>/run/early-boot.txt
}
system=$(kenv -q fruix.system) || system=
[ -w /run ] || mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
probe before
[ -z "$system" ] || ln -sfn "$system" /run/current-system
if ! /bin/sh /etc/rc autoboot; then
    echo "fruix: /etc/rc failed (the step is named above)" >&2
    exit 1
fi
probe after
# Then shepherd (the lab's) with a configuration of sshd only, as a system's.
cat >/run/early-boot.scm <<'END'
(use-modules (shepherd service))
(register-services
 (list (service '(sshd)
                #:start (make-forkexec-constructor '("/usr/sbin/sshd" "-D" "-e"))
                #:stop (make-kill-destructor)
                #:respawn? #t)))
(start-in-the-background '(sshd))
END
exec shepherd --config /run/early-boot.scm
"""


def machine_etc():
    """What the machine's /etc holds that a lab host's /etc shadows."""
    out = {}
    for name in ("rc", "rc.conf", "fstab", "ssh/sshd_config", "defaults/rc.conf", "hostname"):
        p = os.path.join("/etc", name)
        out[name] = hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.exists(p) else None
    return out


@pytest.fixture
def early(fresh, lab):
    """boot(rc_conf=..., system_rc_conf=...): web2, bare, booted again with
    the fixture init; returns its console log since that boot. The machine's
    /etc, hostname and writable root are checked untouched afterwards."""
    before = (machine_etc(), socket.gethostname())
    ctl = fresh(HOST)
    host = ctl.inventory.host(HOST)
    disk = lab.disk(HOST)
    etc = lab.host_dir(HOST) / "etc.upper"
    console = lab.host_dir(HOST) / "console.log"

    def boot(rc_conf="", system_rc_conf='sshd_enable="NO"\n', hook=True, expect_up=True):
        """As a Fruix system boots by default: the host's rc.conf names the
        system's (the rc_conf_files line), which leaves sshd to shepherd."""
        init = disk / "var/lib/fruix/early-boot-init"
        init.write_text(FIXTURE_INIT)
        init.chmod(0o755)
        loader = 'init_exec="/var/lib/fruix/early-boot-init"\n'
        if system_rc_conf is not None:
            sysdir = disk / SYSTEM.lstrip("/") / "etc"
            sysdir.mkdir(parents=True, exist_ok=True)
            (sysdir / "rc.conf").write_text(system_rc_conf)
            loader += f'fruix.system="{SYSTEM}"\n'
        (disk / "boot/loader.conf").write_text(loader)
        with open(etc / "rc.conf", "a") as f:
            f.write(rc_conf + (HOOK + "\n" if hook else ""))
        lab.down([host])
        start = console.stat().st_size
        if expect_up:
            lab.up([host])
        elif expect_up is False:
            with pytest.raises(UserError):
                lab.up([host], timeout=4)
            # It does not come up: wait for its halt (a loaded machine may
            # take longer than lab.up's wait to get there).
            console_until("halted", timeout=240, since=start)
        else:                       # up a moment, perhaps
            try:
                lab.up([host], timeout=4)
            except UserError:
                pass
        return console.read_bytes()[start:].decode(errors="replace")

    def console_until(text, timeout=10, since=0):
        deadline = time.monotonic() + timeout
        while True:
            out = console.read_bytes()[since:].decode(errors="replace")
            if text in out or time.monotonic() > deadline:
                return out
            time.sleep(0.1)         # polling the console, bounded by the deadline

    def run(*cmd):
        p = openssh(ctl, HOST, *cmd)
        assert p.returncode == 0, p.stderr
        return p.stdout.decode()

    boot.run = run
    boot.console_until = console_until
    yield boot
    lab.reset([host])
    lab.up([host])
    # The host's boots changed nothing of the machine's.
    assert (machine_etc(), socket.gethostname()) == before
    fd, probe = tempfile.mkstemp(dir="/", prefix=".fruixops-early-boot-")
    os.close(fd)
    os.unlink(probe)


def test_the_root_is_read_only_until_rc_remounts_it(early):
    early()
    probes = early.run("cat", "/run/early-boot.txt").splitlines()
    for mp in ("/", "/frx", "/var/lib/fruix", "/boot", "/root", "/etc"):
        assert f"before {mp} read-only" in probes
        assert f"after {mp} writable" in probes
    log = early.run("cat", "/run/lab-boot.log").splitlines()
    # rc's steps, in rcorder's order, as FreeBSD's rc.d scripts call them.
    calls = [line for line in log if not line.startswith("rc")]
    assert calls[:4] == ["swapon -aq", "fsck -F -p", "mount -uw /", "mount -a -t nonfs,smbfs"]
    assert "rc: root done" in log and log.index("mount -uw /") < log.index("rc: root done")


def test_the_hostname_comes_from_rc_conf_in_the_host_s_own_uts_namespace(early):
    early(rc_conf='hostname="web2-from-rc-conf"\n')
    assert early.run("hostname").strip() == "web2-from-rc-conf"
    assert "hostname web2-from-rc-conf" in early.run("cat", "/run/lab-boot.log").splitlines()
    assert socket.gethostname() != "web2-from-rc-conf"


def test_the_network_is_configured_as_rc_conf_declares(early):
    early(rc_conf='defaultrouter="127.0.0.254"\n')
    log = early.run("cat", "/run/lab-boot.log").splitlines()
    assert "ifconfig em0 inet 127.0.0.1 netmask 255.0.0.0" in log
    assert "ifconfig lo0 inet 127.0.0.1/8" in log
    assert "route add default 127.0.0.254" in log


def test_an_interface_the_host_lacks_stops_rc_at_netif(early):
    console = early(rc_conf='ifconfig_em9="inet 192.0.2.9/24"\n', expect_up=False)
    assert "ifconfig: interface em9 does not exist" in console
    assert "/etc/rc: netif failed; startup aborted" in console
    assert "fruix: /etc/rc failed" in console
    assert "halted (init exited 1)" in early.console_until("halted")


def test_a_malformed_ifconfig_line_stops_rc_at_netif(early):
    console = early(rc_conf='ifconfig_em0="inet 127.0.0.1 netmsk 255.0.0.0"\n', expect_up=False)
    assert "ifconfig: netmsk: bad value" in console
    assert "/etc/rc: netif failed; startup aborted" in console


def test_a_file_system_fstab_lists_but_the_host_lacks_stops_rc(early, lab):
    with open(lab.host_dir(HOST) / "etc.upper/fstab", "a") as f:
        f.write("/dev/ada1p1\t\t/data\t\tufs\trw\t2\t2\n")
    console = early(expect_up=False)
    assert "/etc/rc: fsck failed; startup aborted" in console


def test_the_system_rc_conf_named_through_rc_conf_files_is_read_last(early):
    """The host's rc.conf (the installer's) enables sshd; the system's, which
    only the re-do loop of source_rc_confs reads, disables it and renames
    the host. rc then leaves sshd to shepherd (the stub's is the only one)."""
    early(system_rc_conf='hostname="web2-from-system"\nsshd_enable="NO"\n')
    log = early.run("cat", "/run/lab-boot.log").splitlines()
    assert "hostname web2-from-system" in log
    assert not [line for line in log if line.startswith("rc start sshd")]
    assert early.run("hostname").strip() == "web2-from-system"


def _herd_sshd_disabled(early):
    try:
        status = early.run("herd", "status", "sshd")
    except AssertionError:          # not up yet
        return None
    return status if "disabled" in status else None


def test_without_the_rc_conf_files_line_rc_starts_sshd_and_shepherd_s_fails(early):
    """The double start the rc_conf_files line exists to prevent: the
    system's rc.conf is not read, rc starts sshd as the installer's rc.conf
    says, and shepherd's own sshd cannot bind the port: respawned until
    shepherd disables it, while an sshd nobody supervises serves the host."""
    early(hook=False, expect_up=None)
    # rc's sshd serves the host; shepherd's, which cannot bind the port,
    # ends disabled (shepherd's own account, asked over rc's sshd).
    status = wait_until(lambda: _herd_sshd_disabled(early), 240, "shepherd's sshd disabled")
    assert "It is running" not in status
    assert "Starting sshd." in early.console_until("Starting sshd.")
