"""INI inventories, as Ansible reads them.

    mail.example.com            # before any section: an ungrouped host
    [web]                       # a group's hosts, each with key=value vars
    web[1:3] ansible_user=admin
    [web:vars]                  # the group's vars, one key=value a line
    ntp=ntp1.example.com
    [prod:children]             # the group's child groups, one a line
    web

Values are Python literals where they parse as one (``2222`` is a number,
``'x'`` a string, ``[1, 2]`` a list), else strings. A ``[g:children]`` may
name a group declared further down; a group named only in ``:vars`` or
``:children`` sections and never declared is an error.
"""

import ast
import re
import shlex
import warnings

from fruixops.inventory.addresses import host_key
from fruixops.errors import UserError
from fruixops.inventory.groups import check_group_name, check_host_name

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_LINE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def read(tree, path):
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", where=str(path)) from None
    group, state = "ungrouped", "hosts"
    pending = {}    # group name -> {"line", "state", "parents"} awaiting a declaration
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        where = f"{path}:{number}:{len(raw) - len(raw.lstrip()) + 1}"
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            check_group_name(group, where)
            if state not in ("hosts", "children", "vars"):
                raise UserError(f"section [{group}:{state}] has an unknown type "
                                "(hosts, children or vars)", where=where)
            if group not in tree.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"where": where, "state": "vars", "parents": []}
                tree.add_group(group, where)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    _resolve(tree, group, pending, where)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise UserError(f"bad section line {line!r} (no spaces inside the brackets)",
                            where=where)
        if state == "hosts":
            _host_line(tree, group, line, where)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise UserError(f"expected key=value in [{group}:vars], got {line!r}", where=where)
            tree.set_var(tree.groups[group], key.strip(), value_of(value.strip()), where)
        else:
            m = _GROUP_LINE.match(line)
            if not m:
                raise UserError(f"expected a group name in [{group}:children], got {line!r}",
                                where=where)
            child = m.group(1)
            if child in tree.groups:
                tree.add_child(group, child, where)
            elif child in pending:
                pending[child]["parents"].append(group)
            else:
                pending[child] = {"where": where, "state": "children", "parents": [group]}
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise UserError(f"[{name}:vars] for a group that is never declared", where=decl["where"])
        raise UserError(f"[{decl['parents'][-1]}:children] names group {name!r}, which is "
                        "never declared", where=decl["where"])


def _resolve(tree, group, pending, where):
    """*group* is declared at last: make it a child of those that named it."""
    for parent in pending[group]["parents"]:
        tree.add_child(parent, group, where)
        if parent in pending and pending[parent]["state"] == "children":
            _resolve(tree, parent, pending, where)
    del pending[group]


def _host_line(tree, group, line, where):
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise UserError(f"cannot read host line {line!r}: {exc}", where=where) from None
    names, port = host_key(tokens[0], where)
    if tokens[0].endswith(":") and port is None:
        raise UserError(f"host {tokens[0]!r} ends in ':' without a port", where=where)
    hvars = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise UserError(f"expected key=value after the host name, got {token!r}", where=where)
        hvars[key] = value_of(value)
    for name in names:
        check_host_name(name, where)
        host = tree.add_host(name, group, port, where)
        for key, value in hvars.items():
            tree.set_var(host, key, value, where)


def value_of(text):
    """An INI value: the Python literal it spells, else the text itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain_literal(value)


def _plain_literal(value):
    if isinstance(value, (list, tuple, set)):
        return [_plain_literal(v) for v in value]
    if isinstance(value, dict):
        return {_plain_literal(k): _plain_literal(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value

