"""A compromised host against the controller: lab hosts whose real sshd runs
every command through tests/hostile_host.sh (ForceCommand), which answers
the exchange a test picks with what the test crafted — garbage, escape
sequences, silence, a flood — and runs every other command for real.

Whatever such a host says, the controller fails that host with one line
(exit 2), never a traceback; the rest of the fleet goes on and the recap or
JSON is printed; nothing waits for ever; memory stays flat; nothing the
host sends reaches the terminal raw."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import PORT_SHIFT, ROOT, inv_cmd

STATUS = "*receiver status*"
PLAN = "*receiver plan --esp*"
RECEIVE = "*receiver receive*"
CLOSURE = "/frx/store/" + "e" * 64 + "-fruix-system-evil1"
# What a hostile host would like the operator's terminal to do: set the window
# title (OSC 0), clear the screen (CSI 2J), write the clipboard (OSC 52), and
# the same CSI as one 8-bit C1 character.
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x07\u009b6n"


def _hostile_inventory(project):
    """The test lab's inventory with its hosts replaced by two hostile ones,
    in a directory of its own (its host_vars/ are the tests' to change, and
    store.gc's view of the lab's inventories stays as it was)."""
    text = project.read_text()
    head = text[:text.index("  children:\n")]
    path = project.parent.parent / "hostile-inventory" / "hostile.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(head + f"""  children:
    hostile:
      vars:
        lab_force_command: sh /run/lab/hostile_host.sh
      hosts:
        evil1: {{ssh_port: {22131 + PORT_SHIFT}}}
        evil2: {{ssh_port: {22132 + PORT_SHIFT}}}
""")
    return path


@pytest.fixture(scope="module")
def evil(lab, project):
    """Two installed lab hosts behind hostile_host.sh (honest until told)."""
    from fruixops.inventory import model as inventory
    from fruixops.controller import Controller
    from fruixops.lab import Lab
    path = _hostile_inventory(project)
    inv = inventory.load(path)
    hosts = list(inv.hosts.values())
    evil_lab = Lab(inv)
    evil_lab.reset(hosts)
    for h in hosts:
        # On the host's own /run/lab, as its rules are: a checkout under
        # /tmp or /root is out of the host's sight.
        evil_lab.host_dir(h.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "tests/hostile_host.sh", evil_lab.host_dir(h.name) / "hostile_host.sh")
    evil_lab.up(hosts)
    evil_lab.install(Controller(path), hosts)
    yield Hostile(evil_lab, path)
    evil_lab.down(hosts)


class Hostile:
    def __init__(self, lab, inventory):
        self.lab, self.inventory = lab, inventory

    def answer(self, host, glob, action, reply=b"", status=""):
        """From now on, *host* answers commands matching *glob* so."""
        d = self.lab.host_dir(host)
        (d / "hostile").mkdir(exist_ok=True)
        name = f"reply{len(self.rules(host))}"
        (d / "hostile" / name).write_bytes(reply.encode() if isinstance(reply, str) else reply)
        arg = reply if action in ("flood",) else name
        with open(d / "hostile-rules", "a") as f:
            f.write(f"{glob}\t{action}\t{arg}\t{status}\n")

    def bare(self, host):
        """Wipe *host*'s disk and boot it bare: a deploy then sends every item."""
        h = self.lab.inventory.host(host)
        self.lab.reset([h])
        self.lab.up([h])

    def rules(self, host):
        p = self.lab.host_dir(host) / "hostile-rules"
        return p.read_text().splitlines() if p.exists() else []

    def honest(self, *hosts):
        for h in hosts:
            (self.lab.host_dir(h) / "hostile-rules").unlink(missing_ok=True)
            (self.inventory.parent / "host_vars" / f"{h}.yaml").unlink(missing_ok=True)

    def set_vars(self, host, text):
        d = self.inventory.parent / "host_vars"
        d.mkdir(exist_ok=True)
        (d / f"{host}.yaml").write_text(text)

    def inv(self, *args, timeout=120):
        return inv_cmd(self.inventory, *args, timeout=timeout)


@pytest.fixture
def hostile(evil):
    evil.honest("evil1", "evil2")
    yield evil
    evil.honest("evil1", "evil2")


def one_line_refusal(proc, host="evil1"):
    """The run failed that host with exactly one clear line, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"fruixops: {host}:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def assert_nothing_raw(text):
    """No control character but the newline reaches the terminal."""
    bad = re.findall("[\x00-\x09\x0b-\x1f\x7f-\x9f]", text)
    assert not bad, f"raw control characters {sorted(set(bad))!r} in {text!r}"


# -- malformed replies --------------------------------------------------------

MALFORMED_STATUS = {
    "generation-number": f"current 1\ngeneration one closure={CLOSURE}\n",
    "closure-not-a-store-path": "current 1\ngeneration 1 closure=/etc/passwd\n",
    "current-not-a-number": "current 1; reboot\n",
    "default-not-a-number": "default 1; reboot\n",
    "boottime": "boottime yesterday\n",
    "same-generation-twice": (f"generation 1 closure={CLOSURE}\n"
                              f"generation 1 closure={CLOSURE}\n"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_STATUS))
def test_malformed_status_fails_that_host_with_one_line(hostile, case):
    hostile.answer("evil1", STATUS, "reply", MALFORMED_STATUS[case])
    r = hostile.inv("status", "--host", "evil1")
    assert r.returncode == 2, r.stderr
    assert "malformed reply to status" in one_line_refusal(r)


MALFORMED = {
    # inv args, the exchange, the crafted answer
    "gc-deletes-a-non-store-path": (["gc", "--host", "evil1", "--keep", "1"], "*receiver gc*",
                                    "delete-item /etc 4096\nfreed 4096\n", "gc"),
    "gc-freed-not-a-number": (["gc", "--host", "evil1", "--keep", "1"], "*receiver gc*",
                              "freed lots\n", "gc"),
    "rollback-answers-nothing": (["rollback", "--host", "evil1"], "*receiver rollback*", "",
                                 "rollback"),
    "rollback-answers-a-word": (["rollback", "--host", "evil1"], "*receiver rollback*",
                                "current two\n", "rollback"),
    "verify-checked-not-a-number": (["verify", "--host", "evil1"], "*receiver verify*",
                                    "checked many\n", "verify"),
    "verify-line-of-garbage": (["verify", "--host", "evil1"], "*receiver verify*",
                               "ok\x00\nchecked 1\n", "verify"),
    "plan-asks-for-an-item-not-in-the-manifest": (
        ["deploy", "--host", "evil1", "--check"], "*missing*current-manifest*",
        f"missing {CLOSURE}-extra\n", "plan"),
    "deploy-plan-asks-for-an-item-not-in-the-manifest": (
        ["deploy", "--host", "evil1", "--base", "stable-canary"], PLAN,
        f"current 1\nmissing {CLOSURE}-extra\nverified lab\n", "plan"),
    "generation-received-in-the-year-3e10": (
        ["generations", "--host", "evil1"], STATUS,
        f"generation 1 closure={CLOSURE} received=999999999999999999\n", "status"),
    "receive-ready-without-a-pid": (["deploy", "--host", "evil1", "--base", "stable-canary"],
                                    RECEIVE, "ready now\n", "receive"),
}
NEEDS_A_PUSH = ("receive-ready-without-a-pid",)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_answers_fail_that_host_with_one_line(hostile, case):
    args, glob, reply, what = MALFORMED[case]
    if case in NEEDS_A_PUSH:
        hostile.bare("evil1")
    hostile.answer("evil1", glob, "reply", reply)
    r = hostile.inv(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"malformed reply to {what}" in one_line_refusal(r)


def test_a_bad_commit_answer_fails_one_host_and_the_fleet_run_goes_on(hostile):
    """evil1 lands the deploy, then says something no receiver says; evil2 is
    honest. The run ends: evil2 deployed, evil1 failed with one line, the
    JSON printed."""
    hostile.bare("evil1")
    hostile.answer("evil1", RECEIVE, "append", "generation 7; rm -rf /\n")
    r = hostile.inv("deploy", "--limit", "evil1:evil2", "--base", "stable-canary", "--json")
    assert r.returncode == 2, r.stderr
    assert "malformed reply to commit" in one_line_refusal(r)
    doc = json.loads(r.stdout)
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["evil2"]["status"] in ("ok", "changed")
    assert by_host["evil2"]["results"][0]["base"] == "stable-canary"
    assert by_host["evil1"]["status"] == "failed"
    assert doc["exit_status"] == 2
    # And as a recap, without --json.
    hostile.honest("evil2")
    r = hostile.inv("deploy", "--limit", "evil1:evil2", "--base", "stable-default")
    assert r.returncode == 2 and "PLAY RECAP" in r.stdout, (r.stdout, r.stderr)
    assert re.search(r"evil2 +: ok=1 ", r.stdout)


def test_every_host_of_a_fleet_deploy_is_reported_with_its_real_outcome(hostile):
    """evil1 is switched and rebooted into its new generation, then answers
    status malformed; evil2 is honest. Both hosts are in the human output and
    in the JSON with what happened to them: evil1 failed *after* its switch
    (changed, on its new generation), evil2 deployed."""
    hostile.bare("evil1")
    hostile.answer("evil1", STATUS, "reply", "current 1; reboot\n")
    r = hostile.inv("deploy", "--limit", "evil1:evil2", "--base", "stable-canary", "--reboot")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "malformed reply to status" in one_line_refusal(r)
    switched = re.search(r"(?m)^evil1: stable-canary .* generation (\d+), .*; "
                         r"FAILED after the switch", r.stdout)
    assert switched, r.stdout
    assert re.search(r"(?m)^evil2: stable-canary .*booted generation", r.stdout), r.stdout
    assert re.search(r"evil1 +: ok=0 +changed=1 .*failed=1", r.stdout), r.stdout
    assert re.search(r"evil2 +: ok=1 .*failed=0", r.stdout), r.stdout
    r = hostile.inv("deploy", "--limit", "evil1:evil2", "--base", "stable-default", "--reboot",
                    "--json")
    assert r.returncode == 2, r.stderr
    hosts = {h["host"]: h for h in json.loads(r.stdout)["hosts"]}
    assert sorted(hosts) == ["evil1", "evil2"]
    assert (hosts["evil1"]["status"], hosts["evil1"]["changed"]) == ("failed", 1)
    assert hosts["evil1"]["results"][0]["generation"] == int(switched.group(1)) + 1
    assert hosts["evil1"]["results"][0]["base"] == "stable-default"
    assert hosts["evil2"]["status"] in ("ok", "changed")
    assert hosts["evil2"]["results"][0]["booted_generation"] == hosts["evil2"]["results"][0][
        "generation"]


def test_a_rollout_reports_the_hosts_it_rolled_back_as_rolled_back(hostile):
    """A batch halted by evil1's malformed commit answer puts honest evil2
    back on its previous generation: its JSON result and its line say so,
    not the generation it no longer has."""
    book = hostile.inventory.parent / "halting.yaml"
    book.write_text("name: both at once\nbase: stable-canary\nstages:\n  - name: all\n"
                    "    hosts: hostile\n    max_fail_percentage: 0\n"
                    "    rollback_on_failure: true\n")
    hostile.inv("deploy", "--host", "evil2", "--base", "stable-default")
    before = json.loads(hostile.inv("status", "--host", "evil2", "--json").stdout)["current"]
    hostile.bare("evil1")
    hostile.answer("evil1", RECEIVE, "append", "generation 7; rm -rf /\n")
    r = hostile.inv("play", str(book), "--json")
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert sorted(hosts) == ["evil1", "evil2"] and doc["halted"]
    evil2 = hosts["evil2"]
    assert evil2["rolled_back"] == 1
    assert evil2["results"][0]["rolled_back"] is True, evil2
    assert f"rolled back to generation {before['generation']}" in evil2["results"][0]["notes"]
    now = json.loads(hostile.inv("status", "--host", "evil2", "--json").stdout)["current"]
    assert now == before


# -- what reaches the terminal -----------------------------------------------

def test_escape_sequences_from_a_host_never_reach_the_terminal(hostile):
    generation = (f"generation 9 closure={CLOSURE} size=1 received=1 deployer={ESCAPES} "
                  f"signer=lab base={ESCAPES} version-label=x\n")
    hostile.answer("evil1", STATUS, "append", generation + f"lock pid=1,by={ESCAPES}\n")
    hostile.answer("evil1", PLAN, "stderr", f"refused: {ESCAPES} no\n", 2)
    runs = [hostile.inv("generations", "--host", "evil1"),
            hostile.inv("status", "--limit", "evil1:evil2"),
            hostile.inv("deploy", "--host", "evil1", "--base", "stable-canary")]
    for r in runs:
        assert_nothing_raw(r.stdout + r.stderr)
    assert runs[0].returncode == 0 and "\\x1b]0;owned\\x07" in runs[0].stdout
    assert runs[2].returncode == 2 and "refused: \\x1b]0;owned" in one_line_refusal(runs[2])
    doc = json.loads(hostile.inv("generations", "--host", "evil1", "--json").stdout)
    assert any(g["generation"] == 9 for g in doc)


# -- time ---------------------------------------------------------------------

@pytest.mark.parametrize("glob,args,limit", [
    # status only reads: query_timeout, by default never longer than command_timeout
    (STATUS, ["status", "--limit", "evil1:evil2", "--json"], "query_timeout"),
    (RECEIVE, ["deploy", "--limit", "evil1:evil2", "--base", "stable-canary", "--json"],
     "command_timeout"),
    ("*receiver item*", ["deploy", "--limit", "evil1:evil2", "--base", "stable-default",
                         "--json"], "command_timeout"),
], ids=["status", "receive-session", "item-stream"])
def test_a_host_that_never_answers_fails_within_its_command_timeout(hostile, glob, args, limit):
    hostile.bare("evil1")           # so that the deploys have items to send
    hostile.set_vars("evil1", "command_timeout: 3\n")
    hostile.answer("evil1", glob, "hang")
    start = time.monotonic()
    try:
        r = hostile.inv(*args, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"inv {' '.join(args)} still waiting after 90 s")
    took = time.monotonic() - start
    assert r.returncode == 2, r.stderr
    assert f"({limit})" in one_line_refusal(r)
    print(f"\n{' '.join(args)}: done in {took:.1f} s with command_timeout 3")
    doc = json.loads(r.stdout)
    assert {h["host"]: h["status"] for h in doc["hosts"]}["evil2"] in ("ok", "changed")
    assert took < 30, took


def test_status_of_a_host_that_never_answers_ends_within_query_timeout(hostile):
    """`inv status` only reads, so it waits query_timeout (2 s here), not
    command_timeout (left at its 300 s): a host whose sshd takes the
    connection and whose command never answers fails with one line, exit 2."""
    hostile.set_vars("evil1", "query_timeout: 2\n")
    hostile.answer("evil1", STATUS, "hang")
    start = time.monotonic()
    try:
        r = hostile.inv("status", "--host", "evil1", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("inv status still waiting after 60 s (query_timeout is 2 s)")
    took = time.monotonic() - start
    print(f"\nstatus of a silent host: done in {took:.1f} s with query_timeout 2")
    assert r.returncode == 2, r.stderr
    assert "no complete answer within 2s (query_timeout)" in one_line_refusal(r)
    assert took < 10, took


def test_a_listener_that_never_speaks_ssh_fails_within_connect_timeout(hostile):
    """A host that accepts the TCP connection and never sends SSH's banner."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        port = mute.getsockname()[1]
        hostile.set_vars("evil1", f"ssh_port: {port}\nconnect_timeout: 2\n")
        start = time.monotonic()
        r = hostile.inv("status", "--limit", "evil1:evil2", "--json", timeout=90)
        took = time.monotonic() - start
    assert r.returncode == 4, r.stderr
    one_line_refusal(r)
    assert took < 6, took           # before connect_timeout: always 10 s
    doc = json.loads(r.stdout)
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {"evil1": "unreachable",
                                                              "evil2": "ok"}


# -- size ---------------------------------------------------------------------

def _peak_rss_mib(args, inventory, timeout=300):
    """Run `inv ARGS`; return (returncode, stderr, the process's peak RSS)."""
    env = dict(os.environ, FRUIXOPS_INVENTORY=str(inventory))
    err = open(inventory.with_name("rss.err"), "w+")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("inv")), "--search-root",
                             str(ROOT), *args], cwd=inventory.parent.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    return proc.returncode, err.read(), usage.ru_maxrss / 1024


def test_a_flooding_host_is_cut_off_and_memory_stays_flat(hostile):
    """The host answers `status` with 1.5 GiB: the controller keeps at most
    reply_limit_mib (default 8) of it and fails the host."""
    hostile.answer("evil1", STATUS, "flood", "1536")
    _, _, honest = _peak_rss_mib(["status", "--host", "evil2"], hostile.inventory)
    start = time.monotonic()
    code, err, peak = _peak_rss_mib(["status", "--host", "evil1"], hostile.inventory)
    took = time.monotonic() - start
    print(f"\npeak RSS of `inv status`: {honest:.0f} MiB against an honest host, "
          f"{peak:.0f} MiB against a 1.5 GiB reply ({took:.1f} s)")
    assert code == 2, err
    assert "reply larger than 8 MiB (reply_limit_mib)" in err and "Traceback" not in err
    assert peak < honest + 32, f"peak RSS {peak:.0f} MiB, {honest:.0f} MiB when honest"
    assert took < 30, took
