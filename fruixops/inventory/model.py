"""Inventories: Ansible inventories (YAML or INI, files or directories,
``group_vars/`` and ``host_vars/``), plus the fleet's base declarations.

    fruixops:            # fleet settings: signing key, trusted keys, known_hosts
    bases:               # base declarations, by name
    all:                 # Ansible's tree: vars / children / hosts
      vars: {...}
      children: {web: {hosts: {web1: {...}}}}

Hosts, groups and variables are what ansible-core makes of the same files
(see groups.py and inventory_files.py); a host's variables merge in Ansible's
order and fruixops reads its own from that merge (hostvars.py). Relative
paths are relative to the inventory file that declares them.
"""

import os
import re
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fruixops.inventory import hostvars
from fruixops.inventory import files as inventory_files
from fruixops.inventory import settings as settings_mod
from fruixops.inventory.settings import Settings
from fruixops.errors import UserError
from fruixops.inventory.yamlfile import Fields, key_node, value_node

DEFAULT_INVENTORY = Path("inventories/lab.yaml")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

# Placeholders of power_cycle_command (run on the controller).
POWER_CYCLE_PLACEHOLDERS = ("host", "inventory", "python")
# A host's name is part of its system item's file name,
# /frx/store/<64 hex>-fruix-system-<host>, which a file system caps at 255
# bytes (with room for the receiver's hidden ".gc-" names).
MAX_HOST_NAME = 128
INITS = ("shepherd-pid1",)
DEFAULT_REBOOT_COMMAND = "shutdown -r now"


@dataclass(frozen=True)
class FileSource:
    """One pinned distribution set: a path or URL and its sha256."""
    location: str      # absolute path, or URL
    sha256: str
    where: str         # file:line:col of the declaration, for errors


@dataclass(frozen=True)
class Source:
    """A base's pinned input: FreeBSD dist sets, or a staging tree."""
    kind: str                              # "dist" or "tree"
    base_txz: FileSource | None = None
    kernel_txz: FileSource | None = None
    tree: str | None = None
    tree_sha256: str | None = None
    synthetic: dict | None = None          # lab: how to make missing dist sets
    where: str = ""


@dataclass(frozen=True)
class BaseDecl:
    name: str
    version_label: str
    release: str
    branch: str
    source: Source
    boots: bool = True     # lab: False declares a kernel the lab boot refuses
    where: str = ""

    def canonical(self):
        """Every field of the declaration (the source by content, not location)."""
        src = self.source
        source = ({"kind": "dist", "base.txz": src.base_txz.sha256,
                   "kernel.txz": src.kernel_txz.sha256}
                  if src.kind == "dist" else {"kind": "tree"})
        return {"name": self.name, "version_label": self.version_label,
                "release": self.release, "branch": self.branch,
                "boots": self.boots, "source": source}


@dataclass
class Host:
    name: str
    vars: dict             # fruixops's view (hostvars.HostVars): ssh_* read, rendered, typed
    groups: list           # the groups it is in, sorted (Ansible's group_names)
    where: str
    var_where: dict = field(default_factory=dict)     # name -> file:line:column of its value
    ansible_vars: dict = field(default_factory=dict)   # the merge as ansible-core makes it

    def var(self, key, default=None):
        return self.vars.get(key, default)

    @property
    def ssh_host(self):
        return self.vars.get("ssh_host", self.name)


@dataclass
class Inventory:
    path: Path             # the first source (a file or a directory)
    settings: Settings
    bases: dict            # name -> BaseDecl
    hosts: dict            # name -> Host, in Ansible's inventory order
    groups: dict           # name -> set of host names (transitively), all and ungrouped too
    sources: list = field(default_factory=list)
    tree: object = None    # the GroupTree (order of members, children, depth)
    warnings: list = field(default_factory=list)

    def host(self, name):
        if name not in self.hosts:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise UserError(f"unknown host {name!r} (hosts: {known})", where=str(self.path))
        return self.hosts[name]

    def base(self, name):
        if name not in self.bases:
            known = ", ".join(sorted(self.bases)) or "none"
            raise UserError(f"unknown base {name!r} (bases: {known})", where=str(self.path))
        return self.bases[name]

    def base_for(self, host, override=None):
        name = override or host.var("base")
        if not name:
            raise UserError(f"host {host.name} has no base; give --base or set vars.base",
                            where=host.where)
        return self.base(name)


def resolve_path(path):
    """The inventory to use: explicit path, else $FRUIXOPS_INVENTORY, else the lab."""
    return resolve_sources(path)[0]


def resolve_sources(path):
    """The inventory sources: the paths given (one, or a list, as --inventory
    given several times), else $FRUIXOPS_INVENTORY, else the lab."""
    given = [p for p in path if p] if isinstance(path, (list, tuple)) else [path] if path else []
    return [Path(p) for p in given] or [Path(os.environ.get("FRUIXOPS_INVENTORY")
                                              or DEFAULT_INVENTORY)]


def load(path=None, warn=None):
    """Read an inventory. *warn* gets each warning line (default: stderr)."""
    sources = resolve_sources(path)
    read = inventory_files.read(sources)
    settings = settings_mod.read(read.blocks["fruixops"])
    bases = _bases(read.blocks["bases"])
    warnings = []
    hosts = {}
    members = {name: read.tree.members(name) for name in read.tree.groups}
    for node in read.tree.hosts.values():
        host = _host(node, read, members, warnings)
        _check_host(host, bases)
        hosts[host.name] = host
    overlap = set(hosts) & set(read.tree.groups)
    if overlap:
        raise UserError(f"names used for both a host and a group: {', '.join(sorted(overlap))}",
                        where=str(sources[0]))
    groups = {name: set(read.tree.members(name)) for name in read.tree.groups}
    for line in warnings:
        (warn or _stderr)(line)
    return Inventory(path=sources[0], settings=settings, bases=bases, hosts=hosts, groups=groups,
                     sources=sources, tree=read.tree, warnings=warnings)


def _stderr(line):
    print(f"fruixops: warning: {line}", file=sys.stderr)


def _host(node, read, members, warnings):
    names = sorted(g.name for g in read.tree.groups_of(node) if g.name != "all")
    # What Ansible gives every host's templates (inventory_file: where the
    # host was first declared).
    first = os.path.abspath(str(node.where).rsplit(":", 2)[0])
    magic = {"inventory_hostname": node.name,
             "inventory_hostname_short": node.name.split(".")[0],
             "group_names": names, "groups": members,
             "inventory_file": first, "inventory_dir": os.path.dirname(first)}
    values, ansible_vars = hostvars.view(hostvars.merged_layers(read, node), magic, warnings)
    values.check_plain()
    return Host(name=node.name, vars=values, groups=names, where=node.where,
                var_where=values.where, ansible_vars=ansible_vars)


def _bases(blocks):
    bases = {}
    for path, doc in blocks:
        here = path.parent
        node = value_node(doc, "bases", path)
        if not isinstance(node.value, dict):
            raise node.error("bases must be a mapping of base name to declaration")
        for name in node.value:
            knode = key_node(node.value, name, path)
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise knode.error(f"bad base name {name!r} (letters, digits, . _ + -)")
            if name in bases:
                raise knode.error(f"base {name!r} is already declared at {bases[name].where}")
            bases[name] = _base(name, knode, value_node(node.value, name, path), here, path)
    return bases


def _base(name, knode, node, here, path):
    f = Fields(node, {"version_label", "release", "branch", "source", "boots"}, f"base {name!r}")
    label = f.get("version_label", str, required=True)
    if not NAME_RE.match(label):
        raise f.node_of("version_label").error(f"bad version_label {label!r}")
    return BaseDecl(
        name=name, version_label=label,
        release=f.get("release", str, required=True),
        branch=f.get("branch", str, required=True),
        source=_source(f.node_of("source") if "source" in f else
                       _missing(f.node, f"base {name!r} lacks required field 'source'"),
                       here, path),
        boots=f.get("boots", bool, True), where=knode.where)


def _missing(node, message):
    raise node.error(message)


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _source(node, here, path):
    f = Fields(node, {"dist", "tree", "synthetic"}, "source")
    if ("dist" in f) == ("tree" in f):
        raise node.error("source needs exactly one of 'dist' or 'tree'")
    synthetic = None
    if "synthetic" in f:
        s = Fields(f.node_of("synthetic"), {"seed", "size_mb"}, "synthetic source")
        synthetic = {"seed": str(s.get("seed", str, required=True)),
                     "size_mb": s.get("size_mb", int, 4)}
    if "tree" in f:
        t = Fields(f.node_of("tree"), {"path", "sha256"}, "tree source")
        sha = t.get("sha256", str)
        if sha is not None and not _SHA256_RE.match(sha):
            raise t.node_of("sha256").error("sha256 must be 64 lowercase hex digits")
        return Source(kind="tree", tree=str(here / t.get("path", str, required=True)),
                      tree_sha256=sha, where=node.where)
    d = Fields(f.node_of("dist"), {"base", "kernel"}, "dist source")
    sets = {}
    for which in ("base", "kernel"):
        if which not in d:
            raise d.node.error(f"dist source lacks {which!r} (its {which}.txz)")
        s = Fields(d.node_of(which), {"path", "url", "sha256"}, f"dist set {which!r}")
        sha = s.get("sha256", str, required=True)
        if not _SHA256_RE.match(sha):
            raise s.node_of("sha256").error("sha256 must be 64 lowercase hex digits")
        if ("path" in s) == ("url" in s):
            raise s.node.error(f"dist set {which!r} needs exactly one of 'path' or 'url'")
        loc = s.get("url", str) or str(here / s.get("path", str))
        sets[which] = FileSource(location=loc, sha256=sha, where=s.node.where)
    return Source(kind="dist", base_txz=sets["base"], kernel_txz=sets["kernel"],
                  synthetic=synthetic, where=node.where)


def _check_host(host, bases):
    where = host.var_where
    init = host.var("init", "shepherd-pid1")
    if init not in INITS:
        raise UserError(f"host {host.name}: unknown init {init!r} (known: {', '.join(INITS)})",
                        where=where.get("init", host.where))
    base = host.var("base")
    if base is not None and base not in bases:
        raise UserError(f"host {host.name}: unknown base {base!r}",
                        where=where.get("base", host.where))
    for n in host.var("pinned_generations", []):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"host {host.name}: pinned_generations holds generation numbers",
                            where=where.get("pinned_generations", host.where))
    if host.var("compress", "auto") not in ("auto", "zstd", "none"):
        raise UserError(f"host {host.name}: compress must be auto, zstd or none",
                        where=where.get("compress", host.where))
    _check_names(host)
    _check_limits(host)
    _check_placeholders(host)
    tar = host.var("lab_tar")
    if tar not in (None, "gnu", "bsdtar"):
        raise UserError(f"host {host.name}: lab_tar must be 'gnu' or 'bsdtar'",
                        where=where.get("lab_tar", host.where))


def _check_names(host):
    """The host's name fits in a store path. (Its address is checked when it
    is connected to: Ansible loads any ansible_host.)"""
    name = host.name
    if len(name) > MAX_HOST_NAME:
        raise UserError(f"host name {name[:24]}... is {len(name)} characters long; at most "
                        f"{MAX_HOST_NAME} (it names the host's system item in /frx/store)",
                        where=host.where)


def _check_limits(host):
    for key in ("connect_timeout", "command_timeout", "query_timeout", "reboot_timeout",
                "reply_limit_mib", "manifest_lifetime"):
        value = host.var(key)
        if value is not None and value < 1:
            raise UserError(f"host {host.name}: {key} must be at least 1, not {value}",
                            where=host.var_where.get(key, host.where))


# "{{ name }}" or "{{ name | filter }}": a Jinja2 expression, never awk's "{{ exit 0 }}".
_JINJA_EXPRESSION = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*(\|[^{}]*)?\}\}")


def _check_placeholders(host):
    """power_cycle_command runs when a host is down: its placeholders are
    checked now, not when the recovery needs it. A literal brace is written
    {{ or }}, as in Python's str.format; so it is not a Jinja2 template, and
    a Jinja2 expression in it, which would run as its own text, is refused."""
    command = host.var("power_cycle_command")
    if command is None:
        return
    where = host.var_where.get("power_cycle_command", host.where)
    known = ", ".join("{" + p + "}" for p in POWER_CYCLE_PLACEHOLDERS)
    jinja = _JINJA_EXPRESSION.search(command)
    if jinja:
        raise UserError(f"power_cycle_command is not a Jinja2 template (its placeholders are "
                        f"{known}): {jinja.group()} would run as written", where=where)
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(command)
                  if f is not None]
    except ValueError as exc:
        raise UserError(f"power_cycle_command: {exc}; placeholders are {known}, a literal "
                        "brace is written {{ or }}", where=where) from None
    for field_name, spec, conv in fields:
        if field_name not in POWER_CYCLE_PLACEHOLDERS or spec or conv:
            shown = "{" + field_name + ("!" + conv if conv else "") + (":" + spec if spec else "") + "}"
            raise UserError(f"power_cycle_command: unknown placeholder {shown}; placeholders "
                            f"are {known}, a literal brace is written {{{{ or }}}}",
                            where=where)
