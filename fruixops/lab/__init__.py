"""The local lab: every host of a lab inventory is a real OpenSSH sshd on
127.0.0.1 (its own port), in its own mount and PID namespaces, with its
persistent disk at ``.lab/<host>/root/``.

A supervisor process per host plays the hardware: it boots the host
(``boot.sh`` as PID 1 of a new PID namespace), boots it again when it reboots,
and power-cycles it on SIGUSR1. The lab needs root, ``unshare`` and sshd.
``sshd.py`` holds the sshd and process helpers; ``privilege.py`` what a
host's administrator set up for a restricted key or a doas/sudo account, and
the bastions hosts are reached through.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fruixops.remote import access
from fruixops.lab import hostetc, link, privilege, sshd
from fruixops.errors import UserError

BOOT = Path(__file__).with_name("boot.sh")
MOUNTPOINTS = ("/frx", "/var/lib/fruix", "/boot", "/home", "/usr/local/etc")

# What a FreeBSD 15 installation leaves in /boot/defaults/loader.conf, as far
# as the lab's loader reads it: the lab writes it once on a new host's disk,
# as the installer would; fruixops never writes it.
LOADER_DEFAULTS = """\
# /boot/defaults/loader.conf (lab: the settings of FreeBSD 15's that the
# lab's loader reads). Do not edit; override in /boot/loader.conf.
kernel="kernel"
bootfile="kernel"
kernel_options=""
loader_conf_files="/boot/device.hints /boot/loader.conf"
loader_conf_dirs="/boot/loader.conf.d"
local_loader_conf_files="/boot/loader.conf.local"
nextboot_conf="/boot/nextboot.conf"
module_path="/boot/modules;/boot/dtb;/boot/dtb/overlays"
"""


class Lab:
    def __init__(self, inventory):
        if not inventory.settings.lab:
            raise UserError("not a lab inventory (fruixops.lab is not true)",
                            where=str(inventory.path))
        self.inventory = inventory
        self.root = (inventory.path.parent / "../.lab").resolve()
        self.known_hosts = Path(inventory.settings.known_hosts or self.root / "known_hosts")
        self.client_key = self.root / "id_ed25519"

    # -- paths ---------------------------------------------------------------

    def host_dir(self, name):
        return self.root / name

    def disk(self, name):
        """The host's persistent disk (what it sees as /)."""
        return self.host_dir(name) / "root"

    def _pidfile(self, name):
        return self.host_dir(name) / "supervisor.pid"

    def supervisor_pid(self, name):
        try:
            pid = int(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None
        return pid if sshd.alive(pid) else None

    # -- set-up --------------------------------------------------------------

    def check_requirements(self):
        if os.geteuid() != 0:
            raise UserError("the lab needs root (it makes mount and PID namespaces)")
        if not os.access(sshd.SSHD, os.X_OK):
            raise UserError(f"the lab needs OpenSSH's sshd at {sshd.SSHD} "
                            "(apt-get install openssh-server, or: make sysdeps)")
        if not os.access("/usr/bin/guile", os.X_OK):
            raise UserError("the lab needs Guile 3.0 at /usr/bin/guile for its shepherd "
                            "(apt-get install guile-3.0, or: make sysdeps)")
        for tool in ("unshare", "ssh-keygen"):
            if not shutil.which(tool):
                raise UserError(f"the lab needs {tool}")

    def prepare(self, hosts):
        self.check_requirements()
        self.root.mkdir(parents=True, exist_ok=True)
        for mp in MOUNTPOINTS:
            os.makedirs(mp, exist_ok=True)
        if not self.client_key.exists():
            sshd.keygen(self.client_key, "fruixops-lab-client")
        client_pub = self.client_key.with_suffix(".pub").read_text()
        known = []
        for host in hosts:
            d = self.host_dir(host.name)
            ssh = d / "ssh"
            ssh.mkdir(parents=True, exist_ok=True)
            hostkey = ssh / "ssh_host_ed25519_key"
            if not hostkey.exists():
                sshd.keygen(hostkey, f"lab-{host.name}")
            mode = access.Access(host).mode
            if mode == "restricted":
                # What `inv keys.authorize` writes (the same function): the
                # lab's key may run the receiver and nothing else.
                key_line = access.public_key_line(client_pub, str(self.client_key))
                (ssh / "authorized_keys").write_text(access.authorize("", key_line))
            else:
                (ssh / "authorized_keys").write_text(client_pub)
            # sshd reads it as the user logging in (a deploy account, not root).
            os.chmod(ssh / "authorized_keys", 0o644 if mode == "become" else 0o600)
            self._attach_disk(host)
            self._install_freebsd(host.name)
            port = host.var("ssh_port", 22)
            # FreeBSD's stock sshd_config says "PermitRootLogin no"; a host
            # with a restricted deploy key says forced-commands-only.
            permit_root = {"root": "prohibit-password", "restricted": "forced-commands-only",
                           "become": "no"}[mode]
            # Paths as the host's own boot sees them (boot.sh binds the host
            # directory at /run/lab); sshd reads it as /etc/ssh/sshd_config.
            hostetc.install(self, host, sshd.sshd_config(
                port, "/run/lab/ssh/ssh_host_ed25519_key", "/run/lab/ssh/authorized_keys",
                host.var("lab_force_command"), permit_root,
                host.var("ssh_host", "127.0.0.1") if host.var("lab_link") else "127.0.0.1"))
            privilege.accounts(self, host, mode)
            hostetc.master_passwd(self, host)
            bastion = privilege.bastion_of(host)
            if bastion:
                known.append(privilege.prepare_bastion(self, bastion, client_pub))
            key_type, key_b64 = hostkey.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[{host.var('ssh_host', '127.0.0.1')}]:{port} {key_type} {key_b64}\n")
        # Record every lab host's key (the lab vouches for them itself).
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        existing = self.known_hosts.read_text().splitlines(True) if self.known_hosts.exists() else []
        ours = {line.split()[0] for line in known}
        merged = [line for line in existing if line.split() and line.split()[0] not in ours] + known
        self.known_hosts.write_text("".join(merged))

    # -- a disk that loses what was not flushed ------------------------------

    def _image(self, name):
        return self.host_dir(name) / "disk.img"

    def _attach_disk(self, host):
        """With `lab_disk_mb`, the host's disk is an ext4 image of that size,
        loop-mounted at its root/: a power cut (power_cut) then keeps only
        what the host's writes had reached, as a real disk would."""
        mb = host.var("lab_disk_mb")
        root = self.disk(host.name)
        if not mb or os.path.ismount(root):
            return
        image = self._image(host.name)
        if not image.exists():
            with open(image, "wb") as f:
                f.truncate(mb << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True,
                           stdout=subprocess.DEVNULL)
        root.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-o", "loop", str(image), str(root)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            raise UserError(f"lab host {host.name}: cannot loop-mount its image disk "
                            f"({mounted.stderr.strip()}); lab_disk_mb needs loop devices")

    def _detach_disk(self, name, keep_image=True):
        root = self.disk(name)
        if os.path.ismount(root):
            subprocess.run(["umount", str(root)], check=True)
        if not keep_image:
            self._image(name).unlink(missing_ok=True)

    def power_cut(self, host):
        """Cut the power of an image-disk host, then power it on: every
        process dies at once (no shutdown, no sync), and its disk keeps what
        the disk had received -- what the host flushed, or the kernel wrote
        back -- and loses what was still in the page cache. Like
        `ipmitool ... power cycle` on a machine whose disk has no battery."""
        if not host.var("lab_disk_mb"):
            raise UserError(f"lab host {host.name}: a power cut that loses unflushed writes "
                            "needs lab_disk_mb (an image disk)")
        self.down([host])
        image = self._image(host.name)
        cut = image.with_name("disk.img.cut")
        # The loop device writes through the image file: reading the file
        # now gives exactly what the disk holds.
        subprocess.run(["cp", "--sparse=always", str(image), str(cut)], check=True)
        self._detach_disk(host.name)        # flushes the rest into the image being discarded
        os.replace(cut, image)
        # What the boot's fsck does: replay the journal.
        fsck = subprocess.run(["e2fsck", "-p", str(image)], capture_output=True, text=True)
        if fsck.returncode >= 4:
            raise UserError(f"lab host {host.name}: fsck after the power cut failed: "
                            f"{fsck.stdout.strip()[-200:]}")
        self.up([host])

    def _install_freebsd(self, name):
        """A new lab host's disk as a FreeBSD installation leaves it, as far
        as fruixops is concerned: /boot/defaults/loader.conf, an empty
        /boot/loader.conf.d, the ESP mounted at /boot/efi, and the stock
        kernel in /boot/kernel (a stand-in: an ELF header the lab's loader
        accepts). Written once; fruixops writes none of these."""
        disk = self.disk(name)
        for sub in ("frx/store", "var/lib/fruix", "boot/defaults", "boot/loader.conf.d",
                    "boot/efi", "boot/kernel"):
            (disk / sub).mkdir(parents=True, exist_ok=True)
        defaults = disk / "boot/defaults/loader.conf"
        if not defaults.exists():
            defaults.write_text(LOADER_DEFAULTS)
        stock = disk / "boot/kernel/kernel"
        if not stock.exists():
            stock.write_bytes(b"\x7fELF lab stand-in for the stock FreeBSD kernel\n")
        os.sync()       # as an installer does before its first reboot

    # -- power ---------------------------------------------------------------

    def up(self, hosts, timeout=20):
        self.prepare(hosts)
        for host in hosts:
            if self.supervisor_pid(host.name):
                continue
            # lab_link: the host in a network namespace of its own, behind a
            # link the kernel shapes (link.py); its address is its own there.
            netns = link.up(self, host) if host.var("lab_link") else ""
            if not netns:
                _check_port_free(host)
            d = self.host_dir(host.name)
            log = open(d / "console.log", "ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "fruixops.lab.supervisor", str(d),
                 host.var("lab_tar") or "gnu", str(host.var("lab_frx_tmpfs_mb") or ""),
                 "yes" if host.var("lab_nextboot") else "", netns],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd="/", env=link.module_env())
            self._pidfile(host.name).write_text(f"{proc.pid}\n")
        privilege.bastions_up(self, hosts)
        for host in hosts:
            self.wait_ssh(host, timeout)

    def wait_ssh(self, host, timeout):
        """Wait until the host's sshd answers with its banner."""
        sshd.wait_banner((host.var("ssh_host", "127.0.0.1"), host.var("ssh_port", 22)),
                          f"lab host {host.name}", self.host_dir(host.name) / "console.log",
                          timeout)

    def down(self, hosts):
        for host in hosts:
            pid = self.supervisor_pid(host.name)
            if pid:
                os.kill(pid, signal.SIGTERM)
                sshd.wait_gone(pid, 10)
                # The host's processes die after its PID 1 (the kernel kills
                # them asynchronously): off means its sshd has let go of the port.
                if not host.var("lab_link"):
                    _wait_port_free(host, 10)
            self._pidfile(host.name).unlink(missing_ok=True)
            if host.var("lab_link"):
                link.down(self, host)
        privilege.bastions_down(self, hosts)

    def reset(self, hosts):
        """Stop the hosts and wipe their disks (keys are kept)."""
        self.down(hosts)
        for host in hosts:
            self._detach_disk(host.name, keep_image=False)
            hostetc.wipe(self, host.name)
            disk = self.disk(host.name)
            if disk.exists():
                subprocess.run(["chmod", "-R", "u+w", str(disk)], check=False)
                shutil.rmtree(disk)

    def is_bare(self, name):
        """True when the host's disk has no generation yet (never installed)."""
        return not os.path.lexists(self.disk(name) / "var/lib/fruix/system/current")

    def install(self, ctl, hosts):
        """Install bare hosts the way a machine arrives with Fruix on it: deploy
        each one's inventory base and boot it (generation 1), in parallel.
        Returns the DeployResults (as JSON) of the hosts that were installed."""
        from fruixops.rollout import fleet
        from fruixops.errors import HostError
        bare = [h for h in hosts if self.is_bare(h.name)]
        if not bare:
            return []
        outcomes, _ = fleet.deploy_many(ctl, bare, reboot=True, install_bootloader=True)
        for o in outcomes.values():
            if o.status in ("failed", "unreachable"):
                raise HostError(o.host, f"lab install failed: {'; '.join(o.messages)}")
        return [o.results[0] for o in outcomes.values()]

    def power_cycle(self, name):
        pid = self.supervisor_pid(name)
        if not pid:
            raise UserError(f"lab host {name} is not running (inv lab.up)")
        os.kill(pid, signal.SIGUSR1)


def _port_free(host):
    addr = (host.var("ssh_host", "127.0.0.1"), host.var("ssh_port", 22))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
            return True
        except OSError:
            return False


def _check_port_free(host):
    """A lab host's port must be free before it boots: otherwise whatever
    listens there would answer in its place."""
    if not _port_free(host):
        raise UserError(f"lab host {host.name}: port {host.var('ssh_port', 22)} is already "
                        "in use by another process (another lab? `inv lab.down`)")


def _wait_port_free(host, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _port_free(host):
        time.sleep(0.02)
