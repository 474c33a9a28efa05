"""A host's variables: the layers Ansible merges, in its order, and
fruixops's view of the merge — Ansible's connection variables read as
fruixops's (``ALIASES``), fruixops's own variables typed (``HOST_VARS``).

Nothing here knows about bases or checks; inventory.py builds hosts from it.
"""

import difflib
import os
import re
from pathlib import Path

from . import inventory_files
from .errors import UserError

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
# Ansible's become switch and method: read by access.become_method, where
# ansible_become must be true for the method to apply.
ANSIBLE_BECOME = ("ansible_become", "ansible_become_method")

# Ansible's connection variables, read as fruixops's. Where one layer of the
# merge sets both spellings, fruixops's own name wins, then the first listed.
ALIASES = {
    "ansible_host": "ssh_host",
    "ansible_ssh_host": "ssh_host",
    "ansible_port": "ssh_port",
    "ansible_ssh_port": "ssh_port",
    "ansible_user": "ssh_user",
    "ansible_ssh_user": "ssh_user",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_private_key_file": "ssh_key",
    "ansible_become_user": "become_user",
}

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


def view(layers, warnings):
    """fruixops's variables of a host, where each was set, and Ansible's
    merge (what ansible-inventory prints), from its *layers*."""
    raw, own, spelled = {}, {}, {}
    for layer in layers:
        raw.update(layer)
        # Within a layer, fruixops's own name wins over an Ansible alias.
        ranked = sorted(layer.items(), key=lambda kv: _alias_rank(kv[0]))
        for key, var in ranked:
            own[ALIASES.get(key, key)] = var
            spelled[ALIASES.get(key, key)] = key
            _near_miss(key, var.where, warnings)
    values, where = {}, {}
    for key, var in own.items():
        values[key] = _typed(key, var, spelled[key]) if key in HOST_VARS else var.value
        where[key] = var.where
    if "ssh_key" in values:
        values["ssh_key"] = _relative_path(values["ssh_key"], where["ssh_key"])
    return values, where, {k: v.value for k, v in raw.items()}


def _alias_rank(key):
    if key in HOST_VARS:
        return len(ALIASES) + 1
    if key in ALIASES:
        return len(ALIASES) - list(ALIASES).index(key)
    return 0


def _typed(key, var, spelled):
    kind, value = HOST_VARS[key], var.value
    name = repr(spelled) if spelled == key else f"{spelled!r} (fruixops's {key})"
    if kind is int and isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        value = int(value)       # Ansible takes "2222" for a port
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise UserError(f"variable {name} must be {_KIND_NAMES[kind]}, "
                        f"not {type(value).__name__} {value!r}", where=var.where)
    if key == "ssh_port" and not 1 <= value <= 65535:
        raise UserError(f"variable {name} must be a port number (1-65535), not {value}",
                        where=var.where)
    return value


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false"}
_KNOWN = sorted(set(HOST_VARS) | set(ALIASES) | set(ANSIBLE_BECOME))


def _near_miss(key, where, warnings):
    if key in HOST_VARS or key in ALIASES or key in ANSIBLE_BECOME:
        return
    close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.8)
    line = (f"{where}: variable {key!r} is not one fruixops reads; did you mean {close[0]!r}?"
            if close else None)
    if line and line not in warnings:
        warnings.append(line)


def _relative_path(value, where):
    """A path set in an inventory is relative to that inventory's directory
    (for group_vars/ and host_vars/ files: the directory that holds them)."""
    if value.startswith("~") or os.path.isabs(value):
        return value
    declared = Path(where.rsplit(":", 2)[0]).parent
    for parent in [declared] + list(declared.parents):
        if parent.name in ("group_vars", "host_vars"):
            declared = parent.parent
            break
    return str(declared / value)


