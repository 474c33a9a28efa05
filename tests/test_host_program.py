"""The code that runs on hosts is POSIX sh that shellcheck accepts."""

import subprocess
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "fruixops"


@pytest.mark.parametrize("script", ["host/receiver.sh", "lab/boot.sh"])
def test_shellcheck_clean(shellcheck, script):
    proc = subprocess.run([shellcheck, "-s", "sh", str(PKG / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_receiver_lists_every_command_it_accepts():
    text = (PKG / "host/receiver.sh").read_text()
    header = text.split("set -eu", 1)[0]
    dispatch = text.rsplit('case $CMD in', 1)[1]
    import re
    commands = re.findall(r"^\s+([a-z-]+)\) cmd_", dispatch, re.M)
    assert len(commands) >= 8
    for c in commands:
        assert f"#   {c}" in header, f"{c} is not listed at the top of receiver.sh"
