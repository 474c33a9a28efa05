"""The lab's loader (fruixops/lab/loader.sh) against what FreeBSD's loader
does with the same files (stand/lua/config.lua, stand/defaults/loader.conf,
nextboot(8)): the order the files are read in, which assignment wins, the
one-shot nextboot.conf consumed before the kernel loads, and which kernels
load. Each case runs the loader in a private mount namespace with a
directory of its own as /boot."""

import os
import subprocess
from pathlib import Path

import pytest

from fruixops.lab import LOADER_DEFAULTS

LOADER = Path(__file__).resolve().parent.parent / "fruixops/lab/loader.sh"
ELF = b"\x7fELF" + b"\0" * 60


@pytest.fixture
def boot(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the loader model runs in a mount namespace: run the tests as root")
    root = tmp_path / "boot"
    (root / "defaults").mkdir(parents=True)
    (root / "defaults/loader.conf").write_text(LOADER_DEFAULTS)
    (root / "loader.conf.d").mkdir()
    (root / "kernel").mkdir()
    (root / "kernel/kernel").write_bytes(ELF)
    return root


def run_loader(boot):
    """Boot once: (exit status, the kernel environment as a dict, messages)."""
    env = boot.parent / "kenv"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" /boot && exec sh "$2" "$3"', "sh", str(boot), str(LOADER), str(env)],
        capture_output=True, text=True, timeout=30)
    kenv = {}
    if env.exists():
        for line in env.read_text().splitlines():
            name, _, value = line.partition("=")
            kenv[name] = value.strip('"')
    return proc.returncode, kenv, proc.stderr


def kernel_dir(root, name):
    d = root.parent / name
    d.mkdir(parents=True)
    (d / "kernel").write_bytes(ELF)
    return d


def test_stock_host_boots_boot_kernel(boot):
    status, kenv, _ = run_loader(boot)
    assert status == 0
    assert kenv["kernel_path"] == "/boot/kernel"
    assert kenv["module_path"].startswith("/boot/kernel;")
    assert "loader_conf_files" not in kenv        # the loader keeps it to itself


def test_files_are_read_in_the_loaders_order_and_the_last_assignment_wins(boot):
    (boot / "loader.conf").write_text('fruix.generation="1"\nfrom_loader_conf="yes"\n')
    (boot / "loader.conf.d/fruix.conf").write_text('fruix.generation="2"\n')
    status, kenv, msgs = run_loader(boot)
    assert status == 0 and kenv["fruix.generation"] == "2"   # conf dirs after loader.conf
    assert kenv["from_loader_conf"] == "yes"
    (boot / "loader.conf.local").write_text('fruix.generation="3"  # local wins\n')
    _, kenv, msgs = run_loader(boot)
    assert kenv["fruix.generation"] == "3"                    # loader.conf.local last
    assert msgs.index("loader.conf.d/fruix.conf") < msgs.index("loader.conf.local")


def test_kernel_outside_boot_loads_from_the_named_directory(boot):
    k = kernel_dir(boot, "frx/store/abc-freebsd-native-kernel-15.0/boot/kernel")
    (boot / "loader.conf.d/fruix.conf").write_text(f'kernel="{k}"\n')
    status, kenv, _ = run_loader(boot)
    assert status == 0
    assert kenv["kernel_path"] == str(k) and kenv["module_path"].startswith(f"{k};")


@pytest.mark.parametrize("problem", ["missing directory", "not an ELF image"])
def test_a_kernel_that_cannot_be_loaded_halts_the_boot(boot, problem):
    k = boot.parent / "store/k/boot/kernel"
    if problem == "not an ELF image":
        k.mkdir(parents=True)
        (k / "kernel").write_bytes(b"not an ELF kernel\n")
    (boot / "loader.conf.d/fruix.conf").write_text(f'kernel="{k}"\n')
    status, _, msgs = run_loader(boot)
    assert status == 3 and f"failed to load kernel '{k}'" in msgs


def test_nextboot_applies_once_and_is_consumed_before_the_kernel_loads(boot):
    good = kernel_dir(boot, "k1/kernel")
    (boot / "loader.conf.d/fruix.conf").write_text(
        f'kernel="{good}"\nfruix.generation="1"\n')
    (boot / "nextboot.conf").write_text(
        'nextboot_enable="YES"\nkernel="/nonexistent/kernel"\nfruix.generation="2"\n')
    status, kenv, _ = run_loader(boot)
    assert status == 3                           # the trial's kernel does not load...
    first = (boot / "nextboot.conf").read_text().splitlines()[0]
    assert first == 'nextboot_enable="NO" '      # ...but the one-shot is spent already
    status, kenv, _ = run_loader(boot)           # so the next boot is the default
    assert status == 0 and kenv["fruix.generation"] == "1"
    assert kenv["kernel_path"] == str(good)


def test_nextboot_without_the_enable_line_is_applied(boot):
    # config.lua skips nextboot.conf only when it begins nextboot_enable="NO"
    # (FreeBSD's loader, run as the oracle, applies this one).
    (boot / "nextboot.conf").write_text('fruix.generation="9"\n')
    (boot / "loader.conf.d/fruix.conf").write_text('fruix.generation="1"\n')
    _, kenv, _ = run_loader(boot)
    assert kenv["fruix.generation"] == "9"
    _, kenv, _ = run_loader(boot)               # spent: its first line was overwritten
    assert kenv["fruix.generation"] == "1"


def test_the_kernel_loaded_is_in_kenv_kernelname(boot):
    k = kernel_dir(boot, "frx/store/abc-freebsd-native-kernel-15.0/boot/kernel")
    (boot / "loader.conf.d/fruix.conf").write_text(f'kernel="{k}"\n')
    _, kenv, _ = run_loader(boot)
    assert kenv["kernelname"] == f"{k}/kernel"
    (boot / "loader.conf.local").write_text('kernel="kernel"\n')
    _, kenv, _ = run_loader(boot)
    assert kenv["kernelname"] == "/boot/kernel/kernel"


def test_malformed_lines_are_reported_and_skipped(boot):
    (boot / "loader.conf").write_text('good="1"\nthis is not an assignment\nalso_good=word\n')
    status, kenv, msgs = run_loader(boot)
    assert status == 0 and kenv["good"] == "1" and kenv["also_good"] == "word"
    assert "malformed line 2" in msgs
