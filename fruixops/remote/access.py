"""How fruixops reaches the receiver on a host: the access mode.

- ``root`` (the default): fruixops logs in as root with a key that may run
  any command, and runs ``sh RECEIVER ARGS`` (and, on a host with no
  receiver yet, installs it).
- ``restricted``: the host variable ``restricted_key: true``. The key is
  restricted on the host (``authorized_keys``: ``restrict,command="RECEIVER
  --ssh"``, sshd ``PermitRootLogin forced-commands-only``): whatever the
  controller asks, the host runs the receiver, which reads the request from
  ``$SSH_ORIGINAL_COMMAND``. So every request is a receiver command line:
  words of ``A-Za-z0-9._:@=+/-`` only.
- ``become``: ``ssh_user`` is an ordinary account (``become: doas | sudo``,
  or Ansible's ``ansible_become``, ``ansible_become_method``,
  ``ansible_become_user``) whose doas/sudo rule allows the receiver and
  nothing else; fruixops runs ``doas -n RECEIVER ARGS``.

In both restricted modes the controller never sends a command of its own:
status, boot time, reboot, checks and manifests are receiver commands, and a
new receiver is installed only on a statement signed by a key the host trusts
(``install-receiver``), since it runs as root for every later command.
"""

import re
import shlex

from fruixops.remote import receiver
from fruixops.errors import UserError
from fruixops.inventory.templating import boolean

BECOME_METHODS = ("doas", "sudo")
_WORD = re.compile(r"^[A-Za-z0-9._:@=+/-]+$")


class Access:
    """The access mode of one inventory host."""

    def __init__(self, host):
        self.host = host
        self.become = become_method(host)
        self.mode = ("become" if self.become else
                     "restricted" if host.var("restricted_key") else "root")

    @property
    def restricted(self):
        """The controller may run nothing on this host but receiver commands."""
        return self.mode != "root"

    def receiver(self, *args):
        """The command line that runs receiver command *args* on this host."""
        words = [str(a) for a in args]
        if self.mode == "root":
            return receiver.command(*words)
        bad = next((w for w in words if not _WORD.match(w) or ".." in w), None)
        if bad is not None:
            raise UserError(f"{self.host.name}: {bad[:40]!r} cannot travel through a "
                            "restricted key (only A-Za-z0-9._:@=+/- and no '..')")
        if self.mode == "restricted":
            return " ".join(words)
        return " ".join([self.become, "-n", receiver.PATH] + [shlex.quote(w) for w in words])

    def status(self, esp=None):
        if self.mode == "root":
            return receiver.status_command(esp)
        return self.receiver("status", *(["--esp", esp] if esp else []))

    def boottime(self):
        return self.receiver("boottime") if self.restricted else "sysctl -n kern.boottime"


def become_method(host):
    """"doas", "sudo" or None (see ``become``)."""
    found = become(host)
    return found and found[0]


def become(host):
    """(method, user) — ("doas" or "sudo", "root") — or None, from ``become``
    or Ansible's variables, read as ansible-core reads them:
    ``ansible_become`` (rendered) must be one of Ansible's booleans, and true
    for a method to apply (sudo by default); with sudo,
    ``ansible_sudo_user`` beats ``ansible_become_user``."""
    method = host.var("become")
    where = host.var_where.get("become", host.where)
    if method is None and host.var("ansible_become") is not None:
        switch = host.var("ansible_become")
        where = host.var_where.get("ansible_become", host.where)
        try:
            on = boolean(switch)
        except ValueError:
            raise UserError(f"host {host.name}: ansible_become must be true or false, "
                            f"not {switch!r}", where=where) from None
        if on:
            method = host.var("ansible_become_method") or "sudo"
            where = host.var_where.get("ansible_become_method", where)
    if method is None:
        return None
    if method not in BECOME_METHODS:
        raise UserError(f"host {host.name}: become must be one of {', '.join(BECOME_METHODS)}, "
                        f"not {method!r}", where=where)
    user, spelled = host.var("become_user", "root"), "become_user"
    if method == "sudo" and host.var("ansible_sudo_user") is not None:
        user, spelled = host.var("ansible_sudo_user"), "ansible_sudo_user"
    if user != "root":
        raise UserError(f"host {host.name}: become_user must be root (the receiver runs as "
                        f"root), not {user!r}", where=host.var_where.get(spelled, where))
    return method, user


# -- the restricted deploy key on a host ---------------------------------------

# What a restricted key runs, whatever the client asks: the receiver at its
# fixed path, which a deploy updates only on a signed statement.
FORCED_COMMAND = f"{receiver.PATH} --ssh"
# restrict: no pty, no forwarding of any kind, no agent, no X11, no
# ~/.ssh/rc; command=: the receiver, always.
KEY_OPTIONS = f'restrict,command="{FORCED_COMMAND}"'


def public_key_line(text, where):
    """The one OpenSSH public key of *text* ("TYPE BASE64 [COMMENT]")."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    parts = lines[0].split() if len(lines) == 1 else []
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")) \
            or not re.match(r"^[A-Za-z0-9+/]+=*$", parts[1]):
        raise UserError("not one OpenSSH public key (TYPE BASE64 [COMMENT])", where=where)
    comment = re.sub(r"[^A-Za-z0-9._@+-]", "_", " ".join(parts[2:]))[:64]
    return " ".join([parts[0], parts[1]] + ([comment] if comment else []))


def authorized_keys_entry(key_line):
    """The authorized_keys line of a restricted deploy key."""
    return f"{KEY_OPTIONS} {key_line}"


def authorize(text, key_line):
    """*text* (an authorized_keys file) with *key_line* restricted to the
    receiver: any other line for the same key goes (a key is either a
    deploy key or not), every other key stays as it was."""
    blob = key_line.split()[1]
    kept = [ln for ln in text.splitlines() if blob not in ln.split()]
    return "".join(f"{ln}\n" for ln in kept + [authorized_keys_entry(key_line)])
