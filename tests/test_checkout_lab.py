"""The front door: `git clone` the project anywhere and the lab works. A lab
host mounts a /tmp, a /root and a /run of its own over the machine's, so a
checkout under /tmp, or in root's home where `make demo` naturally runs, is
out of the host's sight once it boots; the lab must boot its hosts all the
same, and leave the machine's own /etc as it was."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import PORT_SHIFT, ROOT, lab_inventory_text


def _checkout(dest):
    """What `git clone` of this repository gives, with the working tree's
    contents (so that what is tested is the code being tested)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if not os.path.lexists(src):
            continue                    # deleted in the working tree
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)


def _inventory(checkout):
    """The checkout's lab inventory, cut to web1 and db1 (whose doas account
    the host sees through its own /etc), on ports no other test lab uses."""
    # With the lab's cache (nginx must reach it without any change to the
    # directories above the checkout), on a port of its own.
    text = lab_inventory_text(PORT_SHIFT, cache=True)
    text = re.sub(r"(url: http://127\.0\.0\.1:)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 50}",
                  text)
    head = text[:text.index("  children:\n")]
    path = checkout / "inventories" / "lab.yaml"
    path.write_text(head + f"""  children:
    web:
      hosts:
        web1: {{ssh_port: {22150 + PORT_SHIFT}}}
    db:
      hosts:
        db1: {{ssh_port: {22151 + PORT_SHIFT}, ssh_user: deploy, become: doas}}
""")
    return path


def _inv(checkout, *args, check=True):
    """`inv ARGS` run from the checkout, with the checkout's own code."""
    env = dict(os.environ, PYTHONPATH=str(checkout),
               FRUIXOPS_INVENTORY=str(checkout / "inventories" / "lab.yaml"))
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(checkout), *args],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=240)
    if check and proc.returncode != 0:
        logs = "".join(f"\n--- {log}:\n{log.read_text()[-1500:]}"
                       for log in sorted((checkout / ".lab").glob("*/console.log")))
        raise AssertionError(f"inv {' '.join(args)} in {checkout} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}{logs}")
    return proc


def _etc_digest():
    """The machine's own account files, which no lab host may change."""
    return {name: hashlib.sha256(Path("/etc", name).read_bytes()).hexdigest()
            for name in ("passwd", "group", "shadow")}


@pytest.mark.parametrize("parent", ["/tmp", "/root"])
def test_the_lab_boots_and_deploys_from_a_checkout_under(parent):
    if os.geteuid() != 0 or not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.fail("end-to-end tests need root and sshd: run `make test` (it installs sshd)")
    mode_before = os.stat(parent).st_mode
    checkout = Path(tempfile.mkdtemp(prefix="fruixops-checkout-", dir=parent))
    etc_before = _etc_digest()
    try:
        _checkout(checkout)
        _inventory(checkout)
        code = subprocess.run([sys.executable, "-c", "import fruixops.lab; print(fruixops.lab.BOOT)"],
                              env=dict(os.environ, PYTHONPATH=str(checkout)), cwd=checkout,
                              capture_output=True, text=True, check=True).stdout.strip()
        assert code == str(checkout / "fruixops/lab/boot.sh")
        # lab.up boots both hosts bare, then installs them as `make demo`
        # does: a deploy, a reboot through the lab's loader, generation 1.
        _inv(checkout, "lab.up")
        for name in ("web1", "db1"):
            doc = json.loads(_inv(checkout, "status", "--host", name, "--json").stdout)
            assert doc["booted"]["generation"] == 1, (name, doc)
            assert doc["booted"]["closure"].endswith(f"-fruix-system-{name}"), (name, doc)
    finally:
        _inv(checkout, "lab.down", check=False)
        subprocess.run(["chmod", "-R", "u+w", str(checkout)], check=False)
        shutil.rmtree(checkout, ignore_errors=True)
    assert _etc_digest() == etc_before
    assert os.stat(parent).st_mode == mode_before       # /root stays 0700
