"""A host's variables: the layers Ansible merges, in its order, and
fruixops's view of the merge (``HostVars``): Ansible's connection variables
read as fruixops's (``CONNECTION``), each value rendered as Ansible renders
it when it is first read (templating.py), fruixops's own variables typed
(``HOST_VARS``).

Nothing here knows about bases or checks; inventory.py builds hosts from it.
"""

import difflib
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from fruixops.inventory import files as inventory_files
from fruixops.inventory import templating
from fruixops.errors import UserError

# Host variables fruixops understands, with their types. Any other variable
# is the user's (Ansible inventories carry variables for other tools).
HOST_VARS = {
    "base": str,
    "init": str,
    "services": list,
    "ssh_host": str,
    "ssh_port": int,
    "ssh_user": str,
    "ssh_key": str,
    "ssh_host_key": str,
    "reboot_command": str,
    "power_cycle_command": str,
    "reboot_timeout": int,
    "manifest_lifetime": int,
    "compress": str,        # item transfers: auto (zstd when the host has it), zstd, none
    "pinned_generations": list,  # generations `inv gc` never deletes
    "lab_tar": str,         # lab only: "gnu" or "bsdtar", the host's tar
    "lab_frx_tmpfs_mb": int,  # lab only: a small tmpfs as /frx (disk-full tests)
    "lab_nextboot": bool,   # lab only: the host has FreeBSD's nextboot(8)
    "lab_disk_mb": int,     # lab only: the disk is an ext4 image this big (power cuts lose unflushed writes)
    "lab_link": dict,       # lab only: {mbit, delay_ms}, a link the kernel shapes (lab/link.py)
    "esp_path": str,        # where the EFI system partition is mounted (default /boot/efi)
    "boot_fs_check": bool,  # refuse deploys when /frx/store is not on /boot's file system (default true)
    # Limits on every exchange with the host (connection.py has the defaults).
    "connect_timeout": int,   # s: TCP, SSH banner, authentication
    "command_timeout": int,   # s: a command's answer once it has its input
    "query_timeout": int,     # s: the same for an exchange that only reads (status, plan)
    "reply_limit_mib": int,   # MiB kept of one reply (stdout or stderr)
    "lab_force_command": str,  # lab only: sshd's ForceCommand (hostile-host tests)
    # Least privilege (access.py, docs/access.md).
    "restricted_key": bool,   # the host forces the receiver on fruixops's key
    "become": str,            # doas or sudo: ssh_user runs the receiver through it
    "become_user": str,       # must be root
    "ssh_proxy_jump": str,    # [user@]host[:port] of a bastion, as ssh -J
    # The item cache (cache.py): a site's own mirror, or "" to push to this host.
    "cache_url": str,
}
# Ansible's become switch and method, and sudo's own spelling of the user:
# read by access.become, where ansible_become must be true for them.
ANSIBLE_BECOME = ("ansible_become", "ansible_become_method", "ansible_sudo_user")

# Ansible's connection variables, read as fruixops's. Ansible resolves each
# spelling through the layers, then uses the first listed here that is set
# and not null, whatever layers they came from (the ssh connection plugin's
# options list them the other way round: the last one set wins). fruixops's
# own name beats that spelling when it is set in the same layer or a later one.
CONNECTION = {
    "ssh_host": ("ansible_ssh_host", "ansible_host"),
    "ssh_port": ("ansible_ssh_port", "ansible_port"),
    "ssh_user": ("ansible_ssh_user", "ansible_user"),
    "ssh_key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "become_user": ("ansible_become_user",),
}
ALIASES = {spelling: own for own, spellings in CONNECTION.items() for spelling in spellings}
# Not Jinja2 templates: str.format's placeholders ({host}), run on the controller.
NOT_RENDERED = ("power_cycle_command",)


def merged_layers(read, node):
    """The variable layers of a host, lowest precedence first, as ansible-core
    merges them: inline vars of ``all``, inline vars of the host's groups (by
    depth, ansible_group_priority, name), ``group_vars/all``, ``group_vars/``
    of its groups, the host's inline vars, ``host_vars/``. Each layer maps a
    name to a Var; a later layer replaces a variable whole."""
    tree = read.tree
    groups = tree.merge_order([g for g in tree.groups_of(node) if g.name != "all"])
    layers = [tree.groups["all"].vars]
    layers += [g.vars for g in groups]
    layers += [_file_vars(d, "group_vars", "all") for d in read.var_dirs]
    layers += [_file_vars(d, "group_vars", g.name) for d in read.var_dirs for g in groups]
    layers.append(node.vars)
    layers += [_file_vars(d, "host_vars", node.name) for d in read.var_dirs]
    return layers


_FILE_VARS_CACHE = {}


def _file_vars(directory, kind, name):
    merged = {}
    for path in inventory_files.vars_files(directory, kind, name):
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _FILE_VARS_CACHE:
            _FILE_VARS_CACHE[key] = inventory_files.load_vars(path)
        merged.update(_FILE_VARS_CACHE[key])
    return merged


def view(layers, magic, warnings):
    """fruixops's variables of a host (HostVars) and Ansible's merge (what
    ansible-inventory prints: values as written, never rendered) from its
    *layers*. *magic*: the variables Ansible gives every host."""
    merged, ours, layer_of = {}, {}, {}
    for i, layer in enumerate(layers):
        for key, var in layer.items():
            merged[key] = var
            # fruixops's configuration dictionaries merge key by key (what
            # Ansible prints for them stays its own: the last layer's).
            ours[key] = _merged_dict(ours.get(key), var) if key in MERGED_DICTS else var
            layer_of[key] = i
            _near_miss(key, var.where, warnings)
    variables = templating.Variables(ours, magic, lambda where: [str(inventory_dir(where))])
    return HostVars(variables, layer_of), {k: v.value for k, v in merged.items()}


# Host configuration dictionaries (fruixops.system.config) merge key by key across the
# layers, lowest precedence first: group_vars/all's rc_conf and a group's
# rc_conf both apply, a host's value for one key replaces that key only, and
# a key set to null (~) removes it. A layer that sets the variable to
# something other than a mapping replaces it whole, as Ansible would.
MERGED_DICTS = ("rc_conf", "rc_conf_d", "files", "sysctl", "loader_tunables", "cron")


def _merged_dict(below, var):
    if not isinstance(var.value, dict):
        return var
    base = below.value if below is not None and isinstance(below.value, dict) else {}
    value = {k: v for k, v in {**base, **var.value}.items() if v is not None}
    return type(var)(value, var.where)


_UNSET = object()


class HostVars(MutableMapping):
    """fruixops's view of a host's variables: Ansible's connection spellings
    read as ssh_* (CONNECTION), each value rendered when first read, and
    typed if it is one of fruixops's (HOST_VARS). Values given by the program
    (``vars[k] = v``) are taken as they are. ``where`` maps a name to the
    file:line:column its value came from."""

    def __init__(self, variables, layer_of):
        self._vars = variables            # templating.Variables, by Ansible's names
        self._layer_of = layer_of
        self._names = list(dict.fromkeys(ALIASES.get(k, k) for k in layer_of))
        self._read = {}                   # name -> (value or _UNSET, where)
        self._given = {}
        self._gone = set()
        self.where = _Where(self)

    @property
    def scope(self):
        """The variables by Ansible's names, each rendered when a template
        first reads it (templating.Variables): what a host's templates see."""
        return self._vars

    def copy(self):
        """A copy that changes apart, sharing what was rendered."""
        other = HostVars.__new__(HostVars)
        other.__dict__.update(self.__dict__, _given=dict(self._given), _gone=set(self._gone))
        other.where = _Where(other)
        return other

    def check_plain(self):
        """Type now every variable of fruixops's whose value is no template
        (a template is rendered when it is read, as Ansible does)."""
        for name in self._names:
            if name in HOST_VARS and not any(templating.holds_template(self._vars.raw(k))
                                             for k in self._spellings(name)):
                self.get(name)

    def __getitem__(self, name):
        if name in self._given:
            return self._given[name]
        if name in self._gone or name not in self._names:
            raise KeyError(name)
        if name not in self._read:
            self._read[name] = self._resolve(name)
        value = self._read[name][0]
        if value is _UNSET:
            raise KeyError(name)           # every spelling of it is null
        return value

    def where_of(self, name):
        if name in self._given or name in self._gone or name not in self._names:
            return None
        self.get(name)
        return self._read[name][1]

    def _spellings(self, name):
        return [k for k in (name,) + CONNECTION.get(name, ()) if k in self._layer_of]

    def _resolve(self, name):
        # As Ansible: every spelling that is set is rendered; the first that
        # is not null is used. fruixops's own name is invisible to Ansible.
        found = [(k, self._vars[k]) for k in CONNECTION.get(name, ()) if k in self._layer_of]
        spelled, value = next(((k, v) for k, v in found if v is not None), (None, _UNSET))
        if name in self._layer_of and (spelled is None
                                       or self._layer_of[name] >= self._layer_of[spelled]):
            spelled = name
            value = self._vars.raw(name) if name in NOT_RENDERED else self._vars[name]
        where = self._vars.where(spelled or self._spellings(name)[0])
        if value is not _UNSET and name in HOST_VARS:
            value = _typed(name, value, where, spelled)
            if name == "ssh_key":
                value = _relative_path(value, where)
        return value, where

    def __setitem__(self, name, value):
        self._given[name] = value
        self._gone.discard(name)

    def __delitem__(self, name):
        if name not in self:
            raise KeyError(name)
        self._given.pop(name, None)
        self._gone.add(name)

    def __contains__(self, name):
        # Without rendering: a name whose spellings all render null is here
        # but has no value.
        return name in self._given or (name in self._names and name not in self._gone)

    def __iter__(self):
        yield from (n for n in self._names if n not in self._gone and n not in self._given)
        yield from self._given

    def __len__(self):
        return sum(1 for _ in self)


class _Where(Mapping):
    """name -> the file:line:column of the value HostVars reads for it."""

    def __init__(self, hostvars):
        self._hostvars = hostvars

    def __getitem__(self, name):
        where = self._hostvars.where_of(name)
        if where is None:
            raise KeyError(name)
        return where

    def __iter__(self):
        return iter(self._hostvars)

    def __len__(self):
        return len(self._hostvars)


def _typed(key, value, where, spelled):
    kind = HOST_VARS[key]
    name = repr(spelled) if spelled == key else f"{spelled!r} (fruixops's {key})"
    if kind is int and isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        value = int(value)       # Ansible takes "2222" for a port
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise UserError(f"variable {name} must be {_KIND_NAMES[kind]}, "
                        f"not {type(value).__name__} {value!r}", where=where)
    if key == "ssh_port" and not 1 <= value <= 65535:
        raise UserError(f"variable {name} must be a port number (1-65535), not {value}",
                        where=where)
    return value


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false",
               dict: "a mapping"}
_KNOWN = sorted(set(HOST_VARS) | set(ALIASES) | set(ANSIBLE_BECOME))


def _near_miss(key, where, warnings):
    if key in HOST_VARS or key in ALIASES or key in ANSIBLE_BECOME:
        return
    close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.8)
    line = (f"{where}: variable {key!r} is not one fruixops reads; did you mean {close[0]!r}?"
            if close else None)
    if line and line not in warnings:
        warnings.append(line)


def inventory_dir(where):
    """The directory of the inventory that set a value at *where*: its
    file's, or for group_vars/ and host_vars/ files the one that holds them."""
    declared = Path(str(where).rsplit(":", 2)[0]).parent
    for parent in [declared] + list(declared.parents):
        if parent.name in ("group_vars", "host_vars"):
            return parent.parent
    return declared


def _relative_path(value, where):
    """A path set in an inventory is relative to that inventory's directory."""
    if value.startswith("~") or os.path.isabs(value):
        return value
    return str(inventory_dir(where) / value)
