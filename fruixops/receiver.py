"""The host program (``host/*.sh``) as seen from the controller: where it
lives on a host, its version, and the command lines that run it.

The program is kept in a few POSIX sh files split by concern and installed
on a host as one file, their concatenation in the order of PARTS: one unit,
one version, verified as a whole."""

import hashlib
import shlex
from importlib import resources

STATE = "/var/lib/fruix/fruixops"
PATH = f"{STATE}/receiver"


PARTS = ("receiver.sh", "land.sh", "tree.sh", "reuse.sh", "cache.sh", "loader.sh", "switch.sh",
         "gc.sh", "trust.sh", "config.sh", "secrets.sh", "access.sh", "main.sh")


def source():
    """The receiver as installed: its parts, in order, as one program."""
    host = resources.files("fruixops").joinpath("host")
    return b"\n".join(host.joinpath(p).read_bytes() for p in PARTS)


def version():
    """The receiver's version is the sha256 of its text."""
    return hashlib.sha256(source()).hexdigest()


OUTDATED = "fruixops-receiver-outdated"


def if_current(command):
    """A shell line that runs the receiver *command* if the installed receiver
    is this version, and otherwise prints OUTDATED (one round trip either way)."""
    return (f"if [ -f {PATH} ] && [ \"$(openssl dgst -sha256 -r {PATH} | cut -c1-64)\" = "
            f"{version()} ]; then exec sh {PATH} {command}; else echo {OUTDATED}; fi")


def status_command(esp=None):
    """The host's state: the receiver's `status` (with *esp*, the installed
    bootloader too), or, on a host that has no receiver yet, just what it
    booted."""
    extra = f" --esp {shlex.quote(esp)}" if esp else ""
    return (f"if [ -f {PATH} ]; then sh {PATH} status{extra}; "
            "else echo \"booted $(kenv -q fruix.system 2>/dev/null)\"; "
            "echo \"boottime $(sysctl -n kern.boottime 2>/dev/null | "
            "sed -n 's/^{ *sec = \\([0-9]*\\), *usec = \\([0-9]*\\) *}.*/\\1.\\2/p')\"; fi")


def command(*args):
    return " ".join(["sh", PATH] + [shlex.quote(str(a)) for a in args])


def install_command():
    """Install the receiver read from stdin, by rename (executable: a
    restricted key's forced command and doas/sudo rules run it as a program)."""
    return (f"set -e; umask 022; mkdir -p {STATE}; cat > {STATE}/.receiver.new; "
            f"chmod 755 {STATE}/.receiver.new; mv -f {STATE}/.receiver.new {PATH}; "
            f"openssl dgst -sha256 -r {PATH} | cut -c1-64")


def probe():
    """A shell line printing "current", "outdated" or "missing"."""
    return (f"if [ ! -f {PATH} ]; then echo missing; elif [ \"$(openssl dgst -sha256 -r {PATH} | "
            f"cut -c1-64)\" = {version()} ]; then echo current; else echo outdated; fi")
