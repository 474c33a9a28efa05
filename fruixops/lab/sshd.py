"""The lab's sshds and processes: host keys, sshd_config, waiting for a
banner or for a process to be gone."""

import os
import socket
import subprocess
import time

from fruixops.errors import UserError

SSHD = "/usr/sbin/sshd"


def wait_banner(addr, what, log, timeout):
    """Wait until an sshd at *addr* answers with its banner."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(addr, timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise UserError(f"{what} did not come up in {timeout}s (see {log})")
        time.sleep(0.05)


def alive(pid):
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False            # our own child, now reaped
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.02)


def keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def sshd_config(port, hostkey, authorized, force_command=None, permit_root="prohibit-password",
                listen="127.0.0.1"):
    # ForceCommand (lab_force_command): every command the controller sends
    # goes through it, as $SSH_ORIGINAL_COMMAND; the hostile-host tests put
    # a host that answers what they choose there.
    return "\n".join([f"ForceCommand {force_command}"] * bool(force_command) + [
        f"Port {port}",
        f"ListenAddress {listen}",
        f"HostKey {hostkey}",
        # The lab's key, and each account's own (users: authorized_keys).
        f"AuthorizedKeysFile {authorized} .ssh/authorized_keys",
        f"PermitRootLogin {permit_root}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PidFile none",
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
        "",
    ])
