"""On the lab, after a deploy and a reboot: PID 1 of the host is the lab's
Guile shepherd running the booted closure's config.scm; sshd runs under it
(herd says so, and sshd's parent is PID 1); a killed sshd comes back under
shepherd within seconds; the host's own guile loads (shepherd service) from
its site directory; a service with a wrong command ends disabled, not
respawned for ever."""

import re
import time
from pathlib import Path

from conftest import wait_until, openssh
from fruixops.rollout import deploy

HOST = "web2"


def ssh(ctl, command):
    proc = openssh(ctl, HOST, command)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def ok(ctl, command):
    rc, out, err = ssh(ctl, command)
    assert rc == 0, f"{command}: {rc}\n{out}\n{err}"
    return out




def sshd_pid(ctl):
    """sshd's main PID as the host's shepherd reports it (herd status)."""
    rc, out, _ = ssh(ctl, "herd status sshd")
    m = re.search(r"^  Running value is (\d+)\.$", out, re.M)
    return int(m.group(1)) if rc == 0 and m else None


def test_pid1_is_the_guile_shepherd_running_the_booted_config_and_sshd_comes_back(fresh):
    ctl = fresh(HOST)
    r = deploy.deploy(ctl, HOST, "stable-default", reboot=True, install_bootloader=True)
    assert r.booted_generation == r.generation == 1
    system = ok(ctl, "readlink /run/current-system").strip()
    assert system.endswith(f"-fruix-system-{HOST}")
    # PID 1 is the stand-in, given the booted closure's configuration.
    args = ok(ctl, "ps -o args= -p 1").strip()
    assert args.endswith(f"/usr/local/sbin/shepherd --config {system}/etc/shepherd/config.scm"), args
    assert args.startswith("/usr/bin/guile")
    assert ok(ctl, "ps -o comm= -p 1").strip() == "shepherd"

    # sshd runs under shepherd: herd's word, and its parent is PID 1.
    status = ok(ctl, "herd status sshd")
    assert status.startswith("Status of sshd:\n  It is running since "), status
    first = sshd_pid(ctl)
    ppid, args = ok(ctl, f"ps -o ppid=,args= -p {first}").split(None, 1)
    assert ppid == "1" and "/usr/sbin/sshd -D" in args, args      # sshd retitles itself

    # Killed from a second connection: shepherd starts it again.
    killed_at = time.monotonic()
    ok(ctl, f"kill {first}")
    second = wait_until(lambda: (sshd_pid(ctl) or first) != first and sshd_pid(ctl), 10,
                        "sshd respawned under shepherd")
    back_in = time.monotonic() - killed_at
    assert ok(ctl, f"ps -o ppid= -p {second}").strip() == "1"
    assert "  Last respawned on " in ok(ctl, "herd status sshd")
    print(f"sshd back under shepherd {back_in:.2f}s after kill")

    # The host's own guile, as a check run on the host would use it.
    assert "/usr/share/guile/site/3.0" in ok(ctl, "guile -c '(display %load-path)'")
    loads = ok(ctl, "guile --no-auto-compile -c '(use-modules (shepherd service)) "
                    "(display (procedure? make-forkexec-constructor))'")
    assert loads == "#t"
    # ... the machine's own Guile directory is as it was.
    assert not Path("/usr/share/guile/site/3.0/shepherd").exists()


BROKEN = """\
(use-modules (shepherd service))
(register-services
 (list
  (service '(sshd-typo)
           #:start (make-forkexec-constructor '("/usr/sbin/shd" "-D"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(sleeper)
           #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
           #:stop (make-kill-destructor)
           #:respawn? #t)))
(start-in-the-background '(sshd-typo sleeper))
"""


def test_a_service_with_a_wrong_command_ends_disabled_on_the_host(fresh):
    """The host's shepherd (its guile, its module from the site directory) on
    a configuration of our own, in a PID namespace inside the host, with
    its own socket: the wrong command is respawned until the respawn limit
    disables it, and stays disabled."""
    ctl = fresh(HOST)
    d = "/tmp/shepherd-fixture"
    ok(ctl, f"mkdir -p {d} && cat >{d}/config.scm <<'EOF'\n{BROKEN}EOF")
    ok(ctl, f"setsid unshare --pid --fork --mount-proc --kill-child "
            f"shepherd --config {d}/config.scm --socket {d}/socket "
            f">{d}/out 2>&1 </dev/null & echo $! >{d}/pid")
    herd = f"herd -s {d}/socket"
    try:
        wait_until(lambda: "has been disabled" in ok(ctl, f"cat {d}/out"), 10,
                   "sshd-typo disabled")
        status = ok(ctl, f"{herd} status sshd-typo")
        assert "  It is disabled.\n" in status and "Running value" not in status, status
        out = ok(ctl, f"cat {d}/out")
        assert out.count('exec of "/usr/sbin/shd" failed: No such file or directory') == 6
        assert "Service sshd-typo has been disabled.\n" in out
        time.sleep(1)   # and nothing more: no loop
        assert ok(ctl, f"cat {d}/out") == out
        assert "Running value is" in ok(ctl, f"{herd} status sleeper")
    finally:
        ssh(ctl, f"kill -TERM $(cat {d}/pid)")
