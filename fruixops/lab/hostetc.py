"""A lab host's own /etc, as a FreeBSD installation leaves it.

boot.sh mounts it over the machine's /etc as an overlay whose upper
directory is ``.lab/<host>/etc.upper``: the host reads the machine's files
where it has none of its own, writes only to its upper directory, and the
machine's /etc never changes. What the lab puts there:

- from FreeBSD base, replaced on every ``lab.up`` as an upgrade of base
  would: ``/etc/rc`` (the lab's stand-in for rc(8)) and
  ``/etc/defaults/rc.conf`` (the subset of FreeBSD 15's that it reads), from
  ``fruixops/lab/etc/``;
- from the installer, written once: ``/etc/rc.conf`` and ``/etc/fstab``;
- from the host's administrator, on every ``lab.up``: ``/etc/ssh/sshd_config``
  (the lab's sshd settings for this host; sshd reads it as on any host).
"""

import shutil
from pathlib import Path

BASE = Path(__file__).with_name("etc")

# What bsdinstall leaves for a UFS host with one NIC and sshd chosen among
# the services: its network is the address the controller reaches it at.
INSTALLER_RC_CONF = """\
hostname="{name}"
ifconfig_em0="inet {address} netmask 255.0.0.0"
sshd_enable="YES"
# Set dumpdev to "AUTO" to enable crash dumps, "NO" to disable
dumpdev="AUTO"
"""

# bsdinstall's fstab for that host (fstab(5)): root, swap and the ESP on the
# lab host's disk, /dev/ada0.
INSTALLER_FSTAB = """\
# Device\t\tMountpoint\tFStype\tOptions\tDump\tPass#
/dev/ada0p2\t\t/\t\tufs\trw\t1\t1
/dev/ada0p3\t\tnone\t\tswap\tsw\t0\t0
/dev/ada0p1\t\t/boot/efi\tmsdosfs\trw\t2\t2
"""


def upper(lab, name):
    return lab.host_dir(name) / "etc.upper"


def install(lab, host, sshd_config):
    """Write the host's /etc (see the module's docstring)."""
    etc = upper(lab, host.name)
    (lab.host_dir(host.name) / "etc.work").mkdir(parents=True, exist_ok=True)
    for sub in ("defaults", "ssh"):
        (etc / sub).mkdir(parents=True, exist_ok=True)
    for rel in ("rc", "defaults/rc.conf"):
        shutil.copyfile(BASE / rel, etc / rel)
        (etc / rel).chmod(0o644)
    rc_conf = etc / "rc.conf"
    if not rc_conf.exists():
        rc_conf.write_text(INSTALLER_RC_CONF.format(
            name=host.name, address=host.var("ssh_host", "127.0.0.1")))
    fstab = etc / "fstab"
    if not fstab.exists():
        fstab.write_text(INSTALLER_FSTAB)
    (etc / "ssh/sshd_config").write_text(sshd_config)


def master_passwd(lab, host):
    """FreeBSD's /etc/master.passwd, which pw(8) and fruixops's activation
    edit and pwd_mkdb(8) turns into what programs read: written once, from
    the accounts the host has (the machine's, and a deploy account the lab
    added), every password locked ("*": lab hosts log in with keys). The
    lab's pwd_mkdb (lab/sbin) then writes the host's /etc/passwd and
    /etc/shadow from it, as glibc's sshd reads them."""
    etc = upper(lab, host.name)
    target = etc / "master.passwd"
    if target.exists():
        return
    passwd = etc / "passwd" if (etc / "passwd").exists() else Path("/etc/passwd")
    lines = []
    for line in passwd.read_text().splitlines():
        f = line.split(":")
        if len(f) != 7 or line.startswith("#"):
            continue
        lines.append(":".join([f[0], "*", f[2], f[3], "", "0", "0", f[4], f[5], f[6]]))
    target.write_text("\n".join(lines) + "\n")
    target.chmod(0o600)
    # FreeBSD's root group is wheel (gid 0): files fruixops manages are
    # root:wheel there, as on every FreeBSD host.
    group = etc / "group" if (etc / "group").exists() else Path("/etc/group")
    text = group.read_text()
    if not any(line.startswith("wheel:") for line in text.splitlines()):
        (etc / "group").write_text(text + ("" if text.endswith("\n") else "\n")
                                   + "wheel:*:0:root\n")


def wipe(lab, name):
    """A wiped disk takes its /etc with it."""
    for d in ("etc.upper", "etc.work"):
        shutil.rmtree(lab.host_dir(name) / d, ignore_errors=True)
