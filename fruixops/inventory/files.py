"""Reading an inventory's files into a GroupTree, in the order Ansible reads them.

- ``--inventory`` may name files or directories, several times; a directory's
  entries are read in sorted order, recursing, skipping hidden entries,
  ``group_vars``, ``host_vars``, ``vars_plugins`` and backup-like extensions;
- a ``.yaml``/``.yml``/``.json`` file is YAML; a file without an extension is
  YAML when it reads as a YAML mapping, else INI; any other file is INI;
- ``group_vars/NAME`` and ``host_vars/NAME`` beside each source (its directory,
  or itself for a directory source) are variable files: the first of ``NAME``
  (a file or a directory of files, merged in sorted order), ``NAME.yml``,
  ``NAME.yaml``, ``NAME.json``.

The top-level ``fruixops:`` and ``bases:`` keys of a YAML source are fruixops's
own (fleet settings, base declarations), not groups: they are handed back.
"""

import os
import re
from pathlib import Path

from fruixops.inventory import ini as inifile
from fruixops.inventory import yamlfile
from fruixops.inventory.addresses import host_key
from fruixops.errors import UserError
from fruixops.inventory.groups import GroupTree, Var, check_group_name, check_host_name
from fruixops.inventory.yamlfile import key_node, plain, value_node

FRUIXOPS_KEYS = ("fruixops", "bases")
YAML_EXTS = (".yaml", ".yml", ".json")
VARS_EXTS = (".yml", ".yaml", ".json")
# What Ansible skips in an inventory directory (its defaults).
_SKIP_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_SKIP_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
              ".orig", ".cfg", ".retry")


class Read:
    """What reading the sources gave: the graph, fruixops's own blocks
    [(file, node)], and the directories variable files are looked up in."""

    def __init__(self):
        self.tree = GroupTree()
        self.blocks = {key: [] for key in FRUIXOPS_KEYS}
        self.var_dirs = []
        self.files = []


def read(sources):
    """Read every source (file or directory) in order; reconcile the graph."""
    out = Read()
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise UserError("no such file", where=str(source))
        out.var_dirs.append(Path(os.path.realpath(source if source.is_dir() else source.parent)))
        for path in _files_of(source):
            out.files.append(path)
            _read_file(out, path)
    out.tree.reconcile()
    return out


def _files_of(source):
    if not source.is_dir():
        return [source]
    found = []
    for name in sorted(os.listdir(source)):
        if _SKIP_NAMES.search(name) or name.endswith(_SKIP_EXTS):
            continue
        found.extend(_files_of(source / name))
    return found


def _read_file(out, path):
    ext = path.suffix
    if ext in YAML_EXTS:
        doc = yamlfile.load(path, ansible=True)
    elif ext:
        inifile.read(out.tree, path)
        return
    else:
        try:
            doc = yamlfile.load(path, ansible=True)
        except UserError:
            doc = None
        if not doc:  # not a YAML mapping: an INI inventory, as Ansible would try next
            inifile.read(out.tree, path)
            return
    for key in doc:
        if key in FRUIXOPS_KEYS:
            out.blocks[key].append((path, doc))
        else:
            _group(out.tree, doc, key, path)


def _group(tree, mapping, name, path):
    knode = key_node(mapping, name, path)
    check_group_name(name, knode.where)
    node = value_node(mapping, name, path)
    if node.value is not None and not isinstance(node.value, dict):
        # Ansible skips it with a warning; a group that silently loses its
        # hosts is worse than a refusal.
        raise node.error(f"group {name!r} must be a mapping of vars, children, hosts")
    tree.add_group(name, knode.where)
    for section in node.value or ():
        snode = value_node(node.value, section, path)
        if section not in ("vars", "children", "hosts"):
            raise key_node(node.value, section, path).error(
                f"unknown key {section!r} in group {name!r} (allowed: children, hosts, vars)")
        entries = snode.value
        if isinstance(entries, str):          # `hosts: web1` means one entry
            entries = {entries: None}
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise snode.error(f"{section} of group {name!r} must be a mapping")
        if section == "vars":
            for var in entries:
                _set(tree, tree.groups[name], entries, var, path)
        elif section == "children":
            for child in entries:
                _group(tree, entries, child, path)
                tree.add_child(name, child, key_node(entries, child, path).where)
        else:
            for key in entries:
                _hosts(tree, name, entries, key, path)


def _hosts(tree, group, entries, key, path):
    knode = key_node(entries, key, path)
    names, port = host_key(key, knode.where)
    hvars = entries[key] or {}
    if not isinstance(hvars, dict):
        raise value_node(entries, key, path).error(f"vars of host {key!r} must be a mapping")
    for name in names:
        check_host_name(name, knode.where)
        host = tree.add_host(name, group, port, knode.where)
        for var in hvars:
            _set(tree, host, hvars, var, path)


def _set(tree, target, mapping, var, path):
    if not isinstance(var, str) or not var:
        raise key_node(mapping, var, path).error(f"variable name {var!r} must be a string")
    node = value_node(mapping, var, path)
    tree.set_var(target, var, plain(node.value), node.where)


# -- group_vars/ and host_vars/ -------------------------------------------------

def vars_files(directory, kind, name):
    """The variable files for group or host *name* under *directory*/*kind*."""
    base = Path(directory) / kind
    if not base.is_dir():
        return []
    for ext in ("",) + VARS_EXTS:
        candidate = base / f"{name}{ext}"
        if candidate.exists():
            return _dir_vars_files(candidate) if candidate.is_dir() else [candidate]
    return []


def _dir_vars_files(directory):
    found = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full, ext = directory / entry, os.path.splitext(entry)[1]
        if full.is_dir() and not ext:
            found.extend(_dir_vars_files(full))
        elif full.is_file() and (not ext or ext in VARS_EXTS):
            found.append(full)
    return found


def load_vars(path):
    """name -> Var for one variable file (empty for an empty file)."""
    doc = yamlfile.load(path, ansible=True)
    out = {}
    for var in doc:
        if not isinstance(var, str) or not var:
            raise key_node(doc, var, path).error(f"variable name {var!r} must be a string")
        vnode = value_node(doc, var, path)
        out[var] = Var(plain(vnode.value), vnode.where)
    return out
