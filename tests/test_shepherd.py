"""The lab's shepherd (lab/sbin/shepherd, Guile) run directly, outside the
lab, on fixture configurations: it evaluates them with Guile, starts
services in requirement order, respawns what dies until the respawn limit
disables it, survives a configuration that does not load, and answers herd
in Shepherd 0.10's words. As PID 1 (a PID namespace of its own) it reaps
orphans and, on SIGTERM, stops every service and exits 0. A live switch
(`herd load root FILE`, then `herd restart` of what changed, `herd stop` and
`herd unload root` of what is gone) does what Shepherd 0.10.2 does: the load
restarts nothing that runs, and herd says what real herd says."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import wait_until

LAB = Path(__file__).resolve().parent.parent / "fruixops" / "lab"
SHEPHERD = LAB / "sbin" / "shepherd"
HERD = LAB / "sbin" / "herd"
FIXTURES = Path(__file__).resolve().parent / "data" / "shepherd"

@pytest.fixture(autouse=True)
def guile():
    # A missing Guile fails these tests (never a skip counted as a pass).
    if not os.access("/usr/bin/guile", os.X_OK):
        pytest.fail("Guile 3.0 is missing: run `make test` (it installs guile-3.0)")


class Shepherd:
    """The stand-in on a fixture configuration, its socket in *tmp*."""

    def __init__(self, tmp, fixture, pid1=False):
        self.dir = tmp
        self.config = tmp / "config.scm"
        self.config.write_text((FIXTURES / fixture).read_text().replace("@DIR@", str(tmp)))
        self.socket = tmp / "socket"
        self.output = tmp / "shepherd.out"
        argv = [str(SHEPHERD), "--config", str(self.config), "--socket", str(self.socket)]
        if pid1:
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.socket.exists() or self.proc.poll() is not None, 10,
                   "shepherd listens")
        assert self.proc.poll() is None, self.log()

    @property
    def pid(self):
        """shepherd's PID as this namespace sees it (under unshare: its child)."""
        if self.proc.args[0] != "unshare":
            return self.proc.pid
        return wait_until(lambda: children(self.proc.pid), 5, "unshare forks")[0]

    def log(self):
        return self.output.read_text(errors="replace")

    def herd(self, *args):
        return subprocess.run([str(HERD), "-s", str(self.socket), *args],
                              capture_output=True, text=True, timeout=20)

    def status(self, name):
        proc = self.herd("status", name)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def running_pid(self, name):
        m = re.search(r"^  Running value is (\d+)\.$", self.status(name), re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        # SIGTERM: shepherd stops its services, each in a session of its own
        # that killing shepherd's process group would leave running.
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def argv(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture
def shepherd(tmp_path):
    started = []

    def _start(fixture, pid1=False):
        s = Shepherd(tmp_path, fixture, pid1)
        started.append(s)
        return s
    yield _start
    for s in started:
        s.stop()


def test_services_start_in_requirement_order_as_their_user_and_log(shepherd):
    s = shepherd("supervised.scm")
    wait_until(lambda: "Successfully started 2 services" in s.log(), 10, "both start")
    log = s.log()
    assert log.index("Service base has been started.") < log.index("Service app has been started.")
    app = s.running_pid("app")
    # Its own process, running as #:user/#:group, a child of shepherd.
    assert subprocess.run(["ps", "-o", "user=,group=,ppid=", "-p", str(app)],
                          capture_output=True, text=True).stdout.split() == \
        ["nobody", "nogroup", str(s.pid)]
    # #:log-file: the service's output goes there (its directory made).
    wait_until(lambda: (s.dir / "log/base.log").exists()
               and "base says hello" in (s.dir / "log/base.log").read_text(), 5, "base logs")


def test_herd_status_speaks_shepherd_0_10(shepherd):
    s = shepherd("supervised.scm")
    wait_until(lambda: s.running_pid("app"), 10, "app runs")
    text = s.status("app")
    lines = text.splitlines()
    assert lines[0] == "Status of app:"
    assert re.fullmatch(r"  It is running since \S+ \(\d+ seconds ago\)\.", lines[1])
    assert lines[2:] == [f"  Running value is {s.running_pid('app')}.", "  It is enabled.",
                         "  Provides (app).", "  Requires (base).", "  Will be respawned."]
    summary = s.herd("status")
    assert summary.returncode == 0
    assert summary.stdout == "Started:\n + app\n + base\n + root\n"
    unknown = s.herd("status", "nginx")
    assert unknown.returncode == 1
    assert unknown.stderr == "herd: error: service 'nginx' could not be found\n"
    # stop, start, restart.
    assert s.herd("stop", "base").returncode == 0     # app requires it: stopped first
    assert "  It is stopped since" in s.status("app")
    assert s.running_pid("base") is None
    assert s.herd("start", "app").returncode == 0      # starts base again, first
    first = s.running_pid("app")
    assert first and s.running_pid("base")
    assert s.herd("restart", "app").returncode == 0
    assert s.running_pid("app") not in (None, first)


def test_a_killed_service_is_respawned_under_shepherd(shepherd):
    s = shepherd("supervised.scm")
    first = wait_until(lambda: s.running_pid("base"), 10, "base runs")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (s.running_pid("base") or first) != first
                        and s.running_pid("base"), 5, "base respawned")
    assert state(second) in ("S", "R") and s.pid in (int(
        Path(f"/proc/{second}/stat").read_text().rsplit(")", 1)[1].split()[1]),)
    assert "Service base (PID %d) terminated with signal 9." % first in s.log()
    assert "  Last respawned on " in s.status("base")


def test_a_requirement_that_fails_keeps_its_dependents_stopped(shepherd):
    s = shepherd("requirements.scm")
    wait_until(lambda: "could not be started in the background" in s.log(), 10, "start ends")
    log = s.log()
    assert "Service needs-broken depends on broken." in log
    assert "Service needs-nothing-known depends on no-such-service." in log
    assert log.rstrip().endswith(
        "The following services could not be started in the background: "
        "needs-broken needs-nothing-known.")
    assert s.running_pid("fine")
    assert s.running_pid("needs-broken") is None
    assert "  It is stopped (failing).\n" in s.status("broken")
    assert s.herd("status").stdout == ("Started:\n + fine\n + root\nStopped:\n"
                                       " - needs-broken\n - needs-nothing-known\n"
                                       "Failed to start:\n ! broken\n")
    start = s.herd("start", "needs-broken")
    assert start.returncode == 1
    assert start.stderr == "herd: error: failed to start service needs-broken\n"


def test_a_missing_command_and_a_daemonizing_one_end_disabled_not_looped_on(shepherd):
    s = shepherd("failing.scm")
    for name in ("missing", "daemonizes"):
        wait_until(lambda: f"Service {name} has been disabled." in s.log(), 10,
                   f"{name} disabled")
    time.sleep(1)   # nothing more happens to them: no loop
    log = s.log()
    # #:respawn-limit '(3 . 10): three respawns, then the fourth exit disables it.
    assert log.count("exec of \"/usr/local/bin/no-such-daemon\" failed: "
                     "No such file or directory") == 4
    assert log.count("Respawning missing.") == 3
    # The default limit, (5 . 7): five respawns.
    assert log.count("Respawning daemonizes.") == 5
    for name in ("missing", "daemonizes"):
        text = s.status(name)
        assert "  It is disabled.\n" in text and "Running value" not in text
        assert s.herd("start", name).returncode == 1
    assert s.running_pid("steady")
    assert s.proc.poll() is None


@pytest.mark.parametrize("fixture, error", [
    ("syntax-error.scm", r"config.scm:11:1: unexpected end of input"),
    ("unbound.scm", r"Unbound variable: start-in-the-backgroud"),
])
def test_a_configuration_that_does_not_load_leaves_shepherd_running(shepherd, fixture, error):
    s = shepherd(fixture)
    wait_until(lambda: "Exception caught while loading" in s.log(), 10, "the error reported")
    assert re.search(error, s.log()), s.log()
    assert s.proc.poll() is None
    # Nothing was started; herd still answers.
    assert s.herd("status").stdout.startswith("Started:\n + root\n")
    assert "Running value" not in s.log()


def test_as_pid1_it_reaps_orphans_and_stops_everything_on_sigterm(shepherd):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("a PID namespace needs root and unshare: run `make test` as root")
    s = shepherd("failing.scm", pid1=True)
    pid1 = s.pid
    wait_until(lambda: "Service daemonizes has been disabled." in s.log(), 10, "daemonizes done")
    # The daemons it left (`sleep 1000`, one per start) were re-parented to
    # PID 1, beside steady's /bin/sleep.
    cmdlines = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in children(pid1)}
    daemons = [p for p, c in cmdlines.items() if c == b"sleep\x001000\x00"]
    assert len(daemons) == 6, cmdlines
    assert list(cmdlines.values()).count(b"/bin/sleep\x001000\x00") == 1
    # An orphan that exits is reaped, not left a zombie.
    os.kill(daemons[0], signal.SIGKILL)
    wait_until(lambda: state(daemons[0]) is None, 5, "the orphan reaped")
    os.kill(pid1, signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert "Service steady stopped." in s.log()


# A live switch: switch-from.scm runs, switch-to.scm is the next generation.

def switched_from(shepherd):
    """switch-from.scm with its five services started, then `paused' stopped
    by hand."""
    s = shepherd("switch-from.scm")
    wait_until(lambda: "Successfully started 5 services" in s.log(), 10, "all five start")
    assert s.herd("stop", "paused").returncode == 0
    return s


def herd_load(s, fixture):
    """`herd load root` of *fixture*, as the receiver loads the next
    generation's config.scm: (its file, herd's result)."""
    config = s.dir / "next" / "config.scm"
    config.parent.mkdir(exist_ok=True)
    config.write_text((FIXTURES / fixture).read_text())
    return config, s.herd("load", "root", str(config))


def test_herd_load_leaves_every_running_service_as_it_is(shepherd):
    s = switched_from(shepherd)
    before = {n: s.running_pid(n) for n in ("kept", "changed", "dependent", "removed")}
    config, load = herd_load(s, "switch-to.scm")
    # herd prints what shepherd said while answering; what the file starts
    # is started in the background, in shepherd's log.
    assert (load.returncode, load.stdout, load.stderr) == (0, f"Loading {config}.\n", "")
    # A running service's new definition waits, as its replacement, for it
    # to stop: the same processes run, `changed' still with its old command.
    assert {n: s.running_pid(n) for n in before} == before
    assert argv(before["changed"]) == ["/bin/sleep", "1001"]
    for name in ("kept", "changed", "dependent"):
        assert f"Recording replacement for {name}." in s.log()
    # Restarting what changed leaves the unchanged alone.
    assert s.herd("restart", "changed").returncode == 0
    assert s.running_pid("kept") == before["kept"]


def test_herd_restart_runs_the_replacement_and_restarts_what_requires_it(shepherd):
    s = switched_from(shepherd)
    old = {n: s.running_pid(n) for n in ("changed", "dependent")}
    herd_load(s, "switch-to.scm")
    restart = s.herd("restart", "changed")
    # Stopped (what requires it first), the replacement installed, both
    # started; herd shows the starts, the stops are in shepherd's log.
    assert (restart.returncode, restart.stdout, restart.stderr) == (
        0, "Service changed has been started.\nService dependent has been started.\n", "")
    new = s.running_pid("changed")
    assert new not in (None, old["changed"])
    assert argv(new) == ["/bin/sleep", "2001"]
    assert state(old["changed"]) is None             # killed and reaped
    assert s.running_pid("dependent") not in (None, old["dependent"])


def test_herd_load_starts_a_new_service_and_a_stopped_one_it_replaced(shepherd):
    s = switched_from(shepherd)
    assert s.running_pid("paused") is None
    herd_load(s, "switch-to.scm")
    added = wait_until(lambda: s.running_pid("added"), 10, "added starts")
    assert argv(added) == ["/bin/sleep", "2005"]
    # A stopped service is replaced at once, and the file's
    # start-in-the-background starts it, stopped by hand or not.
    assert argv(wait_until(lambda: s.running_pid("paused"), 10, "paused starts")) == \
        ["/bin/sleep", "1003"]
    assert s.log().count("Successfully started 5 services in the background.") == 2


def test_a_service_left_out_is_stopped_then_unloaded(shepherd):
    s = switched_from(shepherd)
    pid = s.running_pid("removed")
    herd_load(s, "switch-to.scm")
    assert s.running_pid("removed") == pid           # the load leaves it running
    stop = s.herd("stop", "removed")
    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "", "")
    assert state(pid) is None
    unload = s.herd("unload", "root", "removed")
    assert (unload.returncode, unload.stdout, unload.stderr) == (
        0, "Removing service 'removed'...\nDone.\n", "")
    for request in (("status", "removed"), ("unload", "root", "removed")):
        gone = s.herd(*request)
        assert (gone.returncode, gone.stdout, gone.stderr) == (
            1, "", "herd: error: service 'removed' could not be found\n")
    assert " - removed" not in s.herd("status").stdout


def test_a_file_herd_load_cannot_evaluate_is_herds_error(shepherd):
    s = shepherd("supervised.scm")
    wait_until(lambda: s.running_pid("app"), 10, "app runs")
    missing = s.dir / "no-such" / "config.scm"
    load = s.herd("load", "root", str(missing))
    assert (load.returncode, load.stdout) == (1, f"Loading {missing}.\n")
    assert load.stderr == (
        "herd: error: exception caught while executing 'load' on service 'root':\n"
        f"In procedure open-file: No such file or directory: \"{missing}\"\n")
    assert s.proc.poll() is None and s.running_pid("app")


def test_herd_restart_exits_0_even_when_the_service_does_not_start_again(shepherd):
    s = shepherd("supervised.scm")
    first = wait_until(lambda: s.running_pid("app"), 10, "app runs")
    assert s.herd("disable", "app").stdout == "Disabled service app.\n"
    restart = s.herd("restart", "app")
    # Shepherd 0.10's restart action returns true whatever the start did: a
    # receiver must ask `herd status', not trust restart's exit status.
    assert (restart.returncode, restart.stdout, restart.stderr) == (0, "", "")
    assert s.running_pid("app") is None and state(first) is None
    assert "Service app is currently disabled." in s.log()
