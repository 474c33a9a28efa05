"""The host program (``host/*.sh``) as seen from the controller: where it
lives on a host, its version, and the command lines that run it.

The program is kept in a few POSIX sh files split by concern and installed
on a host as one file, their concatenation in the order of PARTS: one unit,
one version, verified as a whole."""

import hashlib
import shlex
from importlib import resources

from fruixops.errors import HostError

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


# -- installing it ------------------------------------------------------------------

def install_receiver(hc):
    """Install this fruixops's receiver. As root: by rename. Through a
    restricted key or doas/sudo, where the controller can run nothing but
    the receiver: ``install-receiver``, with a statement signed by the
    controller's signing key, which the host must already trust."""
    if hc.access.restricted:
        ctl = hc.controller
        if ctl is None:
            raise HostError(hc.name, "the receiver is outdated and this connection has no "
                                     "signing key to update it with")
        from fruixops.remote import trust
        change = trust.change(hc.name, "receiver", "-", ctl.signing_key, ctl.signer, source())
        out = hc.check(hc.receiver("install-receiver"), stdin=change).out.split()
    else:
        out = hc.check(install_command(), stdin=source()).out.split()
    if not out or out[0] != version():
        got = out[0][:16] if out else "nothing"
        raise HostError(hc.name, f"receiver install did not verify (got {got}...)")


def receiver_state(hc):
    """"current", "outdated" or "missing": the receiver installed on the host."""
    if not hc.access.restricted:
        return hc.query(probe()).out.strip()
    r = hc.query(hc.receiver("version"))
    if r.status == 0:
        return "current" if r.out.strip() == version() else "outdated"
    if r.status == 127 or "not found" in r.err or "No such file" in r.err:
        return "missing"
    return "outdated"


def install_receiver_if_missing(hc):
    """Install the receiver when it is missing or outdated (one short probe)."""
    state = receiver_state(hc)
    if state == "missing" and hc.access.restricted:
        raise HostError(hc.name, "no fruixops receiver on this host, and this restricted "
                                 "access cannot install one: run `inv keys.authorize` "
                                 "as an administrator (docs/access.md)")
    if state != "current":
        install_receiver(hc)
