"""Least privilege on the lab (docs/access.md): what a host's administrator
did once for a restricted key or a doas/sudo account, and the bastion sshds
hosts are reached through."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

from fruixops.remote import access
from fruixops.store import keys
from fruixops.remote import receiver
from fruixops.lab import hostetc, sshd


def accounts(lab, host, mode):
    """What the host's administrator did once (docs/access.md): for a
    restricted key or a doas/sudo account, put the receiver in place
    (later versions come as signed updates); for doas/sudo, the deploy
    account and a rule that lets it run the receiver and nothing else.
    They go in the host's own /etc (hostetc.py)."""
    if mode == "root":
        return
    program = lab.disk(host.name) / receiver.PATH.lstrip("/")
    if not program.exists():
        # What `inv keys.authorize` does as root before any deploy key
        # works: the receiver, the host's name, the keys it trusts.
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_bytes(receiver.source())
        program.chmod(0o755)
        (program.parent / "host-name").write_text(f"{host.name}\n")
        settings = lab.inventory.settings
        if settings.signing_key:
            keys.ensure(settings.signing_key)
        (program.parent / "trusted").mkdir(exist_ok=True)
        for pub in settings.trusted_keys:
            shutil.copyfile(pub, program.parent / "trusted" / f"{keys.key_name(pub)}.pem")
    if mode != "become":
        return
    user = host.var("ssh_user")
    etc = hostetc.upper(lab, host.name)        # the host's own /etc (hostetc.py)
    uid = 60000 + sum(user.encode()) % 5000
    for name, line in (("passwd", f"{user}:x:{uid}:{uid}:fruixops deploy:/tmp:/bin/sh"),
                       ("group", f"{user}:x:{uid}:"),
                       ("shadow", f"{user}:*:20000:0:99999:7:::")):
        base = Path("/etc", name).read_text()
        (etc / name).write_text(base + ("" if base.endswith("\n") else "\n") + line + "\n")
    os.chmod(etc / "shadow", 0o640)
    method = access.Access(host).become
    if method == "doas":
        # The lab's PATH puts its kenv/sysctl/shutdown first (boot.sh);
        # doas would reset it to FreeBSD's order, where base's own come first.
        (etc / "doas.conf").write_text(
            "permit nopass setenv { PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
            f"/usr/bin:/sbin:/bin }} {user} as root cmd {receiver.PATH}\n")
    else:
        (etc / "sudoers").write_text(
            f"Defaults secure_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"{user} ALL=(root) NOPASSWD: {receiver.PATH}\n")
        os.chmod(etc / "sudoers", 0o440)


def bastion_of(host):
    """A lab host's bastion: its ssh_proxy_jump when that is an address on
    127.0.0.1, as ("user", port); else None."""
    jump = host.var("ssh_proxy_jump") or ""
    user, _, rest = jump.rpartition("@")
    addr, _, port = rest.partition(":")
    if addr != "127.0.0.1" or not port.isdigit() or "," in jump:
        return None
    return (user or "root", int(port))


def _bastion_dir(lab, port):
    return lab.root / f"bastion-{port}"


def prepare_bastion(lab, bastion, client_pub):
    """A lab bastion: a plain sshd that lets the lab's key forward to the
    hosts behind it and do nothing else. Returns its known_hosts line."""
    port = bastion[1]
    d = _bastion_dir(lab, port)
    d.mkdir(parents=True, exist_ok=True)
    hostkey = d / "ssh_host_ed25519_key"
    if not hostkey.exists():
        sshd.keygen(hostkey, f"lab-bastion-{port}")
    (d / "authorized_keys").write_text(f"restrict,port-forwarding {client_pub}")
    os.chmod(d / "authorized_keys", 0o600)
    behind = {f"127.0.0.1:{h.var('ssh_port', 22)}" for h in lab.inventory.hosts.values()
              if bastion_of(h) == bastion}
    config = sshd.sshd_config(port, str(hostkey), str(d / "authorized_keys"), "/bin/false")
    config += "AllowTcpForwarding local\nPermitOpen " + " ".join(sorted(behind)) + "\n"
    (d / "sshd_config").write_text(config.replace("Subsystem sftp internal-sftp\n", ""))
    key_type, key_b64 = hostkey.with_suffix(".pub").read_text().split()[:2]
    return f"[127.0.0.1]:{port} {key_type} {key_b64}\n"


def bastions_up(lab, hosts):
    for bastion in {bastion_of(h) for h in hosts} - {None}:
        d = _bastion_dir(lab, bastion[1])
        pidfile = d / "sshd.pid"
        try:
            if sshd.alive(int(pidfile.read_text())):
                continue
        except (OSError, ValueError):
            pass
        os.makedirs("/run/sshd", exist_ok=True)     # sshd's privilege separation directory
        proc = subprocess.Popen([sshd.SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(d / "sshd.log", "ab"), start_new_session=True)
        pidfile.write_text(f"{proc.pid}\n")
        sshd.wait_banner(("127.0.0.1", bastion[1]), f"lab bastion 127.0.0.1:{bastion[1]}", d / "sshd.log", 20)


def bastions_down(lab, hosts):
    for bastion in {bastion_of(h) for h in hosts} - {None}:
        pidfile = _bastion_dir(lab, bastion[1]) / "sshd.pid"
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            continue
        if sshd.alive(pid):
            os.kill(pid, signal.SIGTERM)
            sshd.wait_gone(pid, 10)
        pidfile.unlink(missing_ok=True)
