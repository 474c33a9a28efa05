"""Shared fixtures. End-to-end tests run against a private copy of the lab:
its own inventory (ports moved so a developer's running lab is left alone),
store, keys and host disks under a temporary project directory."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The test lab's ports are the lab inventory's plus this (a developer's own lab
# keeps running); a second checkout testing at the same time sets its own.
PORT_SHIFT = int(os.environ.get("FRUIXOPS_TEST_PORT_SHIFT", "1000"))


def lab_inventory_text(port_shift, cache=False):
    """The lab inventory, every port shifted; without its cache unless
    *cache* (hosts then get every item pushed, as before there was one)."""
    text = (ROOT / "inventories" / "lab.yaml").read_text()
    text = re.sub(r"ssh_port: (\d+)", lambda m: f"ssh_port: {int(m.group(1)) + port_shift}", text)
    text = re.sub(r"(ssh_proxy_jump: \"[^\"]*@127\.0\.0\.1:|http://127\.0\.0\.1:)(\d+)",
                  lambda m: f"{m.group(1)}{int(m.group(2)) + port_shift}", text)
    if not cache:
        text, n = re.subn(r"(?m)^(  #[^\n]*\n)*  cache:\n(    [^\n]*\n)+", "", text)
        assert n == 1, "the lab inventory's cache block moved"
    return text


def make_project(dest, port_shift=PORT_SHIFT):
    """A project directory with the lab inventory, ports shifted: lab.yaml
    without the cache, lab-cache.yaml with it (the same hosts, store, keys)."""
    (dest / "inventories").mkdir(parents=True)
    (dest / "keys").mkdir()
    (dest / "inventories" / "lab.yaml").write_text(lab_inventory_text(port_shift))
    (dest / "inventories" / "lab-cache.yaml").write_text(lab_inventory_text(port_shift, True))
    shutil.copytree(ROOT / "playbooks", dest / "playbooks")
    shutil.copytree(ROOT / "inventories" / "templates", dest / "inventories" / "templates")
    return dest / "inventories" / "lab.yaml"


TEST_LAB = ROOT / ".test-lab"


def stop_stray_supervisors(under):
    """Switch off lab hosts an earlier, interrupted session left running."""
    import signal
    import time
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"fruixops.lab.supervisor" in argv or argv[0].endswith(b"sshd")  # sshd: bastions
        if ours and any(a.startswith(str(under).encode()) for a in argv):
            pids.append(int(proc.name))
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]]
        time.sleep(0.05)


@pytest.fixture(scope="session")
def project():
    """A session-wide project (inventory, keys, store) for builds and the lab.
    It lives in the repository (git-ignored .test-lab/), at a path the next
    session knows: that one stops what an interrupted session left running."""
    stop_stray_supervisors(TEST_LAB)
    if TEST_LAB.exists():
        subprocess.run(["chmod", "-R", "u+w", str(TEST_LAB)], check=False)
        shutil.rmtree(TEST_LAB)
    yield make_project(TEST_LAB / "project")


@pytest.fixture(scope="session")
def lab(project):
    """Every lab host of the test inventory up, for the whole session."""
    from fruixops.inventory import model as inventory
    from fruixops.lab import Lab
    if os.geteuid() != 0 or not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.fail("end-to-end tests need root and sshd: run `make test` (it installs sshd)")
    inv = inventory.load(project)
    the_lab = Lab(inv)
    hosts = list(inv.hosts.values())
    the_lab.up(hosts)
    yield the_lab
    the_lab.down(hosts)


@pytest.fixture
def fresh(lab, project):
    """fresh('web2') wipes a lab host's disk and boots it bare; returns a
    Controller on the test inventory."""
    from fruixops.inventory import model as inventory
    from fruixops.controller import Controller

    def _fresh(*names):
        inv = inventory.load(project)
        hosts = [inv.host(n) for n in names]
        lab.reset(hosts)
        lab.up(hosts)
        return Controller(project)
    return _fresh


def inv_cmd(project, *args, check=False, env=None, timeout=300):
    """Run `inv ARGS` in the project directory; return CompletedProcess."""
    e = dict(os.environ, FRUIXOPS_INVENTORY=str(project), **(env or {}))
    proc = subprocess.run([str(Path(sys.executable).with_name("inv")),
                           "--search-root", str(ROOT), *args],
                          cwd=project.parent.parent, env=e, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def openssh(ctl, host_name, *args, user="root", stdin=b"", timeout=60):
    """OpenSSH's own client, as someone holding the lab's key would use it
    (an operator at a console, scp): not fruixops's connection code."""
    host = ctl.inventory.host(host_name)
    lab = ctl.inventory.path.parent / "../.lab"
    return subprocess.run(
        ["ssh", "-i", str(lab / "id_ed25519"), "-p", str(host.var("ssh_port")),
         "-o", f"UserKnownHostsFile={ctl.inventory.settings.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=5", f"{user}@127.0.0.1", *args],
        input=stdin, capture_output=True, timeout=timeout)


def host_snapshot(disk):
    """Everything on a lab host's disk that a deploy could change: every path,
    its type, link target or content hash, and mode."""
    import hashlib
    snap = {}
    for dirpath, dirnames, filenames in os.walk(disk):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, disk)
            st = os.lstat(full)
            if os.path.islink(full):
                snap[rel] = ("l", os.readlink(full))
            elif os.path.isdir(full):
                snap[rel] = ("d", st.st_mode)
            else:
                snap[rel] = ("f", st.st_mode,
                             hashlib.sha256(Path(full).read_bytes()).hexdigest())
    return snap


@pytest.fixture
def shellcheck():
    path = shutil.which("shellcheck")
    if not path:
        pytest.fail("shellcheck is missing: run `make test` (it installs it)")
    return path


def wait_until(condition, timeout, what):
    """condition()'s first true value, polled until *timeout* seconds have
    passed (then an AssertionError naming *what*): waiting for an event,
    never a fixed sleep standing in for one."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def host_variant(project, name, host, extra):
    """A copy of the test inventory as *name* where *host* also has the
    inline variables *extra* (YAML flow text, e.g. "lab_frx_tmpfs_mb: 16");
    returns its path."""
    text = project.read_text()
    marker = f"{host}: {{"
    assert marker in text, f"the lab inventory's {host} line moved"
    path = project.with_name(name)
    path.write_text(text.replace(marker, f"{marker}{extra}, ", 1))
    return path
