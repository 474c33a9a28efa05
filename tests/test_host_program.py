"""The code that runs on hosts is POSIX sh that shellcheck accepts."""

import subprocess
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "fruixops"


@pytest.mark.parametrize("script", ["lab/boot.sh", "lab/loader.sh", "lab/sbin/kenv",
                                    "lab/sbin/sysctl", "lab/sbin/shutdown",
                                    "lab/init.sh", "lab/etc/rc", "lab/etc/defaults/rc.conf",
                                    *(f"lab/sbin/{p}" for p in ("mount", "fsck", "swapon", "hostname",
                                                                 "ifconfig", "route", "syslogd")),
                                    "lab/freebsd/nextboot",
                                    *(f"host/{p}" for p in ("receiver.sh", "land.sh", "switch.sh",
                                                            "gc.sh", "trust.sh", "access.sh",
                                                            "main.sh"))])
def test_shellcheck_clean(shellcheck, script):
    proc = subprocess.run([shellcheck, "-s", "sh", str(PKG / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_receiver_as_installed_is_shellcheck_clean(shellcheck, tmp_path):
    """The receiver is checked as the one program a host runs: its parts put
    together (each part alone would refer to the others' names)."""
    from fruixops.remote import receiver
    program = tmp_path / "receiver"
    program.write_bytes(receiver.source())
    proc = subprocess.run([shellcheck, "-s", "sh", str(program)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert program.read_text().startswith("#!/bin/sh\n")
    assert sorted(p.name for p in (PKG / "host").glob("*.sh")) == sorted(receiver.PARTS)


def test_receiver_lists_every_command_it_accepts():
    from fruixops.remote import receiver
    text = receiver.source().decode()
    header = text.split("set -eu", 1)[0]
    dispatch = text.rsplit('case $CMD in', 1)[1]
    import re
    commands = re.findall(r"^\s+([a-z-]+)\) cmd_", dispatch, re.M)
    assert len(commands) >= 8
    for c in commands:
        assert f"#   {c}" in header, f"{c} is not listed at the top of receiver.sh"


def _receiver_function(name):
    from fruixops.remote import receiver
    text = receiver.source().decode()
    start = text.index(f"\n{name}() {{") + 1
    return text[start:text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("tar", ["tar", "bsdtar"])
def test_controller_listing_is_what_the_host_lists(tmp_path, tar):
    """The listing the controller signs (through the manifest) is byte for
    byte the one the receiver's own `listing` makes of the unpacked item, with
    GNU tar and bsdtar: otherwise `inv verify` would report drift that is
    not there, and small items (listed on the host) would be refused."""
    import io
    import os
    import shutil

    from fruixops.store import archive
    if not shutil.which(tar):
        pytest.fail(f"{tar} is not installed (make sysdeps)")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/sh").write_bytes(b"#!/bin/sh\n" * 1000)
    (tree / "bin/sh").chmod(0o755)
    os.link(tree / "bin/sh", tree / "bin/[")                   # hard link
    (tree / "sp ace-é ü").write_text("x")                      # space, UTF-8
    (tree / "-dash").write_text("")                            # empty, leading dash
    (tree / "empty dir").mkdir()
    (tree / "lib").mkdir()
    os.symlink("../bin/sh", tree / "lib/link to sh")
    os.symlink("nowhere", tree / "dangling")
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a/b/c/deep").write_bytes(os.urandom(70000))
    buf = io.BytesIO()
    archive.write_tree(buf, tree)
    ours = archive.listing(io.BytesIO(buf.getvalue()))
    dest = tmp_path / "unpacked"
    dest.mkdir()
    subprocess.run([tar, "-xf", "-", "-C", str(dest)], input=buf.getvalue(), check=True)
    functions = "".join(_receiver_function(f) for f in ("link_lines", "listing", "shape"))
    theirs = subprocess.run(["sh", "-c", functions + 'listing "$1"', "sh",
                             str(dest)], capture_output=True, check=True).stdout
    assert ours == theirs
    # The shape a whole item is held to: the listing without contents.
    shape = subprocess.run(["sh", "-c", functions + 'shape "$1"', "sh", str(dest)],
                           capture_output=True, check=True).stdout
    masked = sorted(line[:2] + b"-" + line[66:] if line[:2] in (b"f ", b"x ") else line
                    for line in ours.splitlines())
    assert shape == b"".join(line + b"\n" for line in masked)
    assert ours.count(b"\nf ") == 3 and ours.count(b"\nx ") == 2      # modes: 0444, 0555
    assert b"l ../bin/sh ./lib/link to sh\n" in ours


@pytest.mark.parametrize("name", ["new\nline", "back\\slash"])
def test_names_a_listing_cannot_hold_are_refused_at_build(tmp_path, name):
    import io

    from fruixops.store import archive
    (tmp_path / name).write_text("x")
    with pytest.raises(ValueError, match="newline or backslash"):
        archive.write_tree(io.BytesIO(), tmp_path)
