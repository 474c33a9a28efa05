"""The receiver's reading of the loader's files (host/loader.sh), as
FreeBSD's stand/lua/config.lua reads them: every file the loader reads after
fruix.conf, the settings that suppress it, values as config.parse takes them,
one-shots as checkNextboot applies them, and FreeBSD 14.0's order (before
local_loader_conf_files). Run on a scratch /boot whose paths are absolute
under a temporary directory; the lab tests run the same code on hosts."""

import os
import subprocess
from pathlib import Path

import pytest

LOADER = Path(__file__).resolve().parent.parent / "fruixops/host/loader.sh"


@pytest.fixture
def boot(tmp_path):
    b = tmp_path / "boot"
    (b / "defaults").mkdir(parents=True)
    (b / "loader.conf.d").mkdir()
    # FreeBSD 14.1+'s defaults (stand/defaults/loader.conf), its paths moved
    # under the scratch directory.
    (b / "defaults/loader.conf").write_text(
        f'kernel="kernel"\nbootfile="kernel"\n'
        f'loader_conf_files="{b}/device.hints {b}/loader.conf"\n'
        f'loader_conf_dirs="{b}/loader.conf.d"\n'
        f'local_loader_conf_files="{b}/loader.conf.local"\n'
        f'nextboot_conf="{b}/nextboot.conf"\n')
    (b / "loader.conf.d/fruix.conf").write_text(
        'kernel="/frx/store/k/boot/kernel"\nfruix.generation="2"\n')
    return b


def walk(boot, what, version=None, shims=None):
    env = dict(os.environ)
    if version:
        shims.mkdir(exist_ok=True)
        (shims / "freebsd-version").write_text(f"#!/bin/sh\necho {version}\n")
        (shims / "freebsd-version").chmod(0o755)
        env["PATH"] = f"{shims}:{env['PATH']}"
    script = (f'BOOT={boot}; LOADER_CONF=$BOOT/loader.conf.d/fruix.conf; '
              f'NEXTBOOT_CONF=$BOOT/nextboot.conf; . {LOADER}; {what}')
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_loader_conf_dirs_changed_in_loader_conf_means_fruix_conf_is_never_read(boot):
    (boot / "loader.conf").write_text('# mine\nloader_conf_dirs="/boot/mine.d"\n')
    assert walk(boot, "loader_overrides") == [
        f'{boot}/loader.conf:2: sets loader_conf_dirs="/boot/mine.d", changing the files the '
        f'loader reads: {boot}/loader.conf.d/fruix.conf is never read']


def test_loader_conf_files_changed_is_reported(boot):
    (boot / "loader.conf").write_text(f'loader_conf_files="{boot}/extra.conf"\n')
    (boot / "extra.conf").write_text('loader_conf_dirs=""\n')
    out = walk(boot, "loader_overrides")
    assert f'{boot}/loader.conf:1: sets loader_conf_files="{boot}/extra.conf", read next: ' \
           f'{boot}/loader.conf.d/fruix.conf is never read' in out
    assert any(line.startswith(f"{boot}/extra.conf:1: sets loader_conf_dirs") for line in out)


def test_every_name_ending_in_conf_counts_hidden_ones_too(boot):
    (boot / "loader.conf.d/.fruix.conf").write_text('init_exec="/sbin/init"\n')
    (boot / "loader.conf.d/xconf").write_text('\nkernel="kernel"\n')
    (boot / "loader.conf.d/off.conf.disabled").write_text('kernel="kernel"\n')
    out = walk(boot, "loader_overrides")
    # Whatever the directory's order, each is reported with its file and line
    # (before fruix.conf, it wins in another order).
    assert len(out) == 2, out
    assert any(line.startswith(f'{boot}/loader.conf.d/.fruix.conf:1: sets init_exec="/sbin/init"')
               for line in out)
    assert any(line.startswith(f'{boot}/loader.conf.d/xconf:2: sets kernel="kernel"')
               for line in out)


def test_a_kernel_in_single_quotes_is_a_line_the_loader_skips(boot):
    """config.parse accepts "VALUE" or a bare word: kernel='...' is malformed
    and skipped, so it overrides nothing (and a bare path is no word)."""
    (boot / "loader.conf.local").write_text("kernel='/boot/kernel'\nkernel=/boot/kernel\n")
    assert walk(boot, "loader_overrides") == []
    (boot / "loader.conf.local").write_text('kernel="kernel" # the stock one\r\n')
    assert walk(boot, "loader_overrides") == [
        f'{boot}/loader.conf.local:1: sets kernel="kernel" after fruix.conf']


def test_values_are_expanded_as_the_loader_expands_them(boot):
    (boot / "loader.conf.local").write_text('k="/boot/other"\nfruix.system="${k}\\/x"\n')
    assert walk(boot, "loader_overrides") == [
        f'{boot}/loader.conf.local:2: sets fruix.system="/boot/other/x" after fruix.conf']


def test_a_fruix_conf_the_loader_expands_is_reported_as_unparsed(boot):
    (boot / "loader.conf.d/fruix.conf").write_text('g="3"\nfruix.generation="$g"\n')
    assert walk(boot, "fruix_conf_unparsed") == ["2 a value the loader expands ($ or a backslash)"]
    (boot / "loader.conf.d/fruix.conf").write_text("fruix.generation='3'\n")
    assert walk(boot, "fruix_conf_unparsed")[0].startswith("1 a value the loader does not accept")


@pytest.mark.parametrize("version,reported", [("14.0-RELEASE-p6", False),
                                              ("14.1-RELEASE", True), ("15.0-STABLE", True)])
def test_loader_conf_local_before_loader_conf_d_on_freebsd_14_0(boot, tmp_path, version,
                                                                reported):
    """14.0's loader has no local_loader_conf_files step: its defaults list
    loader.conf.local in loader_conf_files, read before loader.conf.d, so a
    kernel= there loses to fruix.conf."""
    if version.startswith("14.0"):
        defaults = boot / "defaults/loader.conf"
        defaults.write_text(defaults.read_text().replace(
            f'{boot}/loader.conf"', f'{boot}/loader.conf {boot}/loader.conf.local"'))
    (boot / "loader.conf.local").write_text('kernel="kernel"\n')
    out = walk(boot, "loader_overrides", version, tmp_path / "shims")
    assert bool(out) == reported, out


@pytest.mark.parametrize("first,pending", [('nextboot_enable="YES"', "3"),
                                           ('nextboot_enable="NO"', ""),
                                           ('nextboot_enable="NO" ', ""),
                                           ('nextboot_enable="yes"', "3"),
                                           ("# a one-shot", "3")])
def test_a_one_shot_is_pending_unless_its_first_line_says_NO(boot, first, pending):
    """config.lua's checkNextboot: any file whose text does not begin
    nextboot_enable="NO" is applied."""
    (boot / "nextboot.conf").write_text(f'{first}\nfruix.generation="3"\n')
    assert walk(boot, "echo \"[$(pending_generation)]\"") == [f"[{pending}]"]


def test_nextboot_enable_in_a_loader_file_decides_the_one_shot(boot):
    (boot / "nextboot.conf").write_text('nextboot_enable="YES"\nfruix.generation="3"\n')
    (boot / "loader.conf").write_text('nextboot_enable="NO"\n')
    assert walk(boot, "echo \"[$(pending_generation)]\"") == ["[]"]
    assert walk(boot, "loader_overrides") == [
        f'{boot}/loader.conf:1: sets nextboot_enable="NO": no one-shot is applied']
    # "YES" in a loader file: an old, consumed one-shot is applied at every boot.
    (boot / "nextboot.conf").write_text('nextboot_enable="NO" \nfruix.generation="3"\n')
    (boot / "loader.conf").write_text('nextboot_enable="YES"\n')
    assert walk(boot, "echo \"[$(pending_generation)]\"") == ["[3]"]
    assert walk(boot, "loader_overrides") == [
        f'{boot}/loader.conf:1: sets nextboot_enable="YES": a nextboot file is applied at '
        'every boot']


def test_override_lines_are_one_line_each_escaped(boot):
    (boot / "loader.conf.d/a\x1bb.conf").write_text('kernel="x\\\\y"\n')
    out = walk(boot, "loader_overrides")
    assert len(out) == 1 and "\x1b" not in out[0]
    assert "a\\x1bb.conf:1: sets kernel=\"x\\\\y\"" in out[0]
