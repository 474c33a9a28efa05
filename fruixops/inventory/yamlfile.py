"""Strict YAML loading that keeps line and column numbers for error messages.

Inventories and playbooks are read with ruamel.yaml's round-trip loader, which
rejects duplicate keys and records where every mapping and key came from.
"""

import datetime
import re
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.resolver import VersionedResolver, implicit_resolvers
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.util import RegExp

from fruixops.errors import UserError


class _Yaml11Resolver(VersionedResolver):
    """YAML 1.1 plain scalars as Ansible's loader reads them: yes/no/on/off are
    booleans (y and n are not), a float needs its dot, 010 is octal."""

    _BOOL = RegExp(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE"
                   r"|on|On|ON|off|Off|OFF)$")
    _FLOAT = RegExp(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                       |\.[0-9_]+(?:[eE][-+][0-9]+)?
                       |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                       |[-+]?\.(?:inf|Inf|INF)
                       |\.(?:nan|NaN|NAN))$""", re.X)

    @property
    def versioned_resolver(self):
        version = (1, 1)
        if version not in self._version_implicit_resolver:
            for versions, tag, regexp, first in implicit_resolvers:
                if version not in versions:
                    continue
                if tag.endswith(":bool"):
                    regexp, first = self._BOOL, list("yYnNtTfFoO")
                elif tag.endswith(":float"):
                    regexp = self._FLOAT
                self.add_version_implicit_resolver(version, tag, regexp, first)
        return self._version_implicit_resolver[version]


def load(path, ansible=False):
    """Return the YAML document at *path* (a CommentedMap), or raise UserError.

    With *ansible*, plain scalars resolve as Ansible's YAML 1.1 loader
    resolves them (inventories and their vars files)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError("no such file", where=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", where=str(path)) from None
    yaml = YAML(typ="rt")
    if ansible:
        yaml.Resolver = _Yaml11Resolver
        yaml.version = (1, 1)
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
        _check_expansion(doc, path)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = (exc.problem or exc.context or "malformed YAML").strip()
        if "duplicate key" in str(exc):
            problem = "duplicate key " + _duplicate_key_name(exc)
        raise UserError(problem, where=where) from None
    except YAMLError as exc:
        raise UserError(f"malformed YAML: {str(exc).splitlines()[0]}", where=str(path)) from None
    except RecursionError:
        raise UserError("nested too deeply", where=str(path)) from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise UserError("expected a mapping at the top level", where=f"{path}:1:1")
    return doc


# What a document may stand for once its aliases are expanded, in values.
# Loading never expands an alias (it shares the value), but every use of the
# values does: a "billion laughs" document of a few hundred bytes stands for
# billions. Refused before anything expands it.
MAX_EXPANDED_VALUES = 1_000_000


def _check_expansion(doc, path):
    """Refuse a document whose aliases expand beyond MAX_EXPANDED_VALUES, or
    that contains itself; linear in the document's own size."""
    sizes, open_ = {}, set()

    def size(node):
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise whole_node(node, path).error("a recursive alias (a value that contains "
                                               "itself)")
        open_.add(id(node))
        total = 1
        entries = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in entries:
            total += size(value) + (size(key) if isinstance(node, dict) else 0)
            if total > MAX_EXPANDED_VALUES:
                where = (key_node(node, key, path) if isinstance(node, dict)
                         else item_node(node, key, path))
                raise where.error(f"aliases expand to more than {MAX_EXPANDED_VALUES:,} values "
                                  "(an alias bomb?); refused")
        open_.discard(id(node))
        sizes[id(node)] = total
        return total

    size(doc)


def plain(value):
    """*value* as plain Python data (dict, list, str, int, float, bool, None)."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, ScalarBoolean):
        return bool(value)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime(*value.timetuple()[:6], value.microsecond, value.tzinfo)
    return value


def _duplicate_key_name(exc):
    for line in str(exc).splitlines():
        if "found duplicate key" in line:
            return line.split("found duplicate key", 1)[1].split("with value")[0].strip()
    return ""


class Node:
    """A value from a YAML file together with where it came from."""

    def __init__(self, value, path, line=None, col=None):
        self.value, self.path, self.line, self.col = value, str(path), line, col

    @property
    def where(self):
        if self.line is None:
            return self.path
        return f"{self.path}:{self.line + 1}:{self.col + 1}"

    def error(self, message):
        return UserError(message, where=self.where)


def key_node(mapping, key, path):
    """Node for the *key* of an entry of *mapping* (points at the key)."""
    try:
        line, col = mapping.lc.key(key)
    except (AttributeError, KeyError, TypeError):
        line = col = None
        if hasattr(mapping, "lc"):
            line, col = mapping.lc.line, mapping.lc.col
    return Node(mapping[key], path, line, col)


def value_node(mapping, key, path):
    """Node for the *value* of an entry of *mapping* (points at the value)."""
    try:
        line, col = mapping.lc.value(key)
    except (AttributeError, KeyError, TypeError):
        return key_node(mapping, key, path)
    return Node(mapping[key], path, line, col)


def item_node(seq, index, path):
    try:
        line, col = seq.lc.item(index)
    except (AttributeError, KeyError, TypeError):
        line = col = None
    return Node(seq[index], path, line, col)


def whole_node(value, path):
    """Node for a mapping or sequence itself."""
    lc = getattr(value, "lc", None)
    if lc is not None:
        return Node(value, path, lc.line, lc.col)
    return Node(value, path)


class Fields:
    """Checked access to a mapping's fields: unknown keys and wrong types are
    user errors with file:line:column."""

    def __init__(self, node, allowed, what):
        if not isinstance(node.value, dict):
            raise node.error(f"{what} must be a mapping")
        self.node, self.what, self.map = node, what, node.value
        for key in self.map:
            if key not in allowed:
                raise key_node(self.map, key, node.path).error(
                    f"unknown field {key!r} in {what} (allowed: {', '.join(sorted(allowed))})")

    def get(self, key, kind, default=None, required=False):
        if key not in self.map or self.map[key] is None:
            if required:
                raise self.node.error(f"{self.what} lacks required field {key!r}")
            return default
        node = value_node(self.map, key, self.node.path)
        check_type(node, kind, f"{key!r} in {self.what}")
        return node.value

    def node_of(self, key):
        return value_node(self.map, key, self.node.path)

    def __contains__(self, key):
        return key in self.map


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false",
               list: "a list", dict: "a mapping"}


def check_type(node, kind, what):
    value = node.value
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is list:
        ok = isinstance(value, (list, CommentedSeq))
    if not ok:
        raise node.error(f"{what} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                         f"not {type(value).__name__} {value!r}")
