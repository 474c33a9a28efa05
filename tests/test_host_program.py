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


def _assembled(tmp_path):
    """A store item that landed (files 0444/0555, mtime 1 as unpacked) and an
    assembled delta beside it: ./a and ./bin/b linked from the item, ./c a
    copy of one of its files, ./e what the delta brought. Returns (hold, old,
    new): hold() runs the receiver's hold_assembled and returns (why,
    the files it hashed)."""
    import hashlib
    import os
    old, new, got = tmp_path / "store/old", tmp_path / "tmp/unpack/new", tmp_path / "tmp/got"
    for d in (old, new / "bin", got):
        d.mkdir(parents=True)
    contents = {"a": (b"A" * 5000, 0o444), "b": (b"#!/bin/sh\n", 0o555), "c": (b"C", 0o444)}
    have = []
    for name, (data, mode) in contents.items():
        (old / name).write_bytes(data)
        (old / name).chmod(mode)
        os.utime(old / name, (1, 1))
        kind = "x" if mode & 0o111 else "f"
        have.append(f"{kind} {hashlib.sha256(data).hexdigest()} {old / name}\n")
    (tmp_path / "tmp/have").write_text("".join(have))
    os.link(old / "a", new / "a")
    os.link(old / "b", new / "bin/b")
    (new / "c").write_bytes(b"C")
    (new / "c").chmod(0o444)
    (new / "e").write_bytes(b"E")
    (new / "e").chmod(0o444)
    os.utime(new / "e", (1, 1))
    for d in (new / "bin", new):
        d.chmod(0o555)
    (got / "new.came").write_text("./e\n")

    def sha(b):
        return hashlib.sha256(b).hexdigest()
    listing = sorted(["d - .", "d - ./bin", f"f {sha(contents['a'][0])} ./a",
                      f"x {sha(contents['b'][0])} ./bin/b", f"f {sha(b'C')} ./c",
                      f"f {sha(b'E')} ./e"])
    (tmp_path / "listing").write_text("".join(line + "\n" for line in listing))
    functions = "".join(_receiver_function(f) for f in ("audit_modes", "link_lines", "shape",
                                                         "hold_assembled"))

    def hold():
        why = subprocess.run(["sh", "-c", functions + 'hold_assembled "$1" "$2"', "sh",
                              str(new), str(tmp_path / "listing")],
                             env={"PATH": os.environ["PATH"], "T": str(tmp_path / "tmp"),
                                  "got": str(got / "new")},
                             capture_output=True, text=True, check=True).stdout
        return why, (got / "new.hash").read_text() if (got / "new.hash").exists() else ""
    return hold, old, new


def test_an_assembled_item_reads_again_only_what_it_did_not_link(tmp_path):
    """An upgrade costs what it receives: a file linked from an item that
    landed verified (the same inode, read-only, never written since) is not
    hashed again; what the delta brought and a copy are."""
    hold, _, _ = _assembled(tmp_path)
    why, hashed = hold()
    assert why == ""
    assert "'./c'" in hashed and "'./e'" in hashed
    assert "./a" not in hashed and "./bin/b" not in hashed


def test_a_store_file_written_since_it_landed_is_hashed_and_refused(tmp_path):
    import os
    hold, old, _ = _assembled(tmp_path)
    os.chmod(old / "a", 0o644)
    with open(old / "a", "ab") as f:
        f.write(b"changed")
    os.chmod(old / "a", 0o444)
    why, hashed = hold()
    assert "'./a'" in hashed
    assert why == "its file ./a does not have its listed content\n"


def test_an_assembled_item_is_held_to_its_listing_in_kinds_modes_and_contents(tmp_path):
    import os
    hold, old, new = _assembled(tmp_path)
    os.chmod(new, 0o755)
    os.chmod(new / "c", 0o644)          # a copy with the wrong content
    (new / "c").write_bytes(b"not C")
    os.chmod(new / "c", 0o444)
    os.chmod(new, 0o555)
    assert hold()[0] == "its file ./c does not have its listed content\n"
    os.chmod(old / "b", 0o755)          # a linked file made writable: its inode is shared
    assert hold()[0] == "writable entry in a store item\n"
    os.chmod(old / "b", 0o444)          # ... or not executable any more
    assert hold()[0] == "its tree once assembled is not what its signed listing says\n"
