"""Inventories: one YAML file per fleet, in Ansible's shape, plus the fleet's
base declarations.

    fruixops:            # fleet settings: signing key, trusted keys, known_hosts
    bases:               # base declarations, by name
    all:                 # Ansible's tree: vars / children / hosts
      vars: {...}
      children: {web: {hosts: {web1: {...}}}}

Relative paths in an inventory are relative to the inventory file's directory.
Variables are merged all < parent group < child group < host, with
``group_vars/<group>.yaml`` and ``host_vars/<host>.yaml`` beside the file taken
as if written in the group's or host's own ``vars``.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import yamlfile
from .errors import UserError
from .yamlfile import Fields, Node, check_type, key_node, value_node, whole_node

DEFAULT_INVENTORY = Path("inventories/lab.yaml")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

# Host variables fruixops understands, with their types.
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
    "esp_path": str,        # where the EFI system partition is mounted (default /boot/efi)
}
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
    vars: dict
    groups: list
    where: str
    var_where: dict = field(default_factory=dict)

    def var(self, key, default=None):
        return self.vars.get(key, default)

    @property
    def ssh_host(self):
        return self.vars.get("ssh_host", self.name)


@dataclass
class Settings:
    signing_key: Path | None = None
    trusted_keys: list = field(default_factory=list)
    known_hosts: Path | None = None
    store: Path | None = None
    lab: bool = False


@dataclass
class Inventory:
    path: Path
    settings: Settings
    bases: dict            # name -> BaseDecl
    hosts: dict            # name -> Host
    groups: dict           # name -> set of host names (transitively)

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
    return Path(path or os.environ.get("FRUIXOPS_INVENTORY") or DEFAULT_INVENTORY)


def load(path=None):
    path = resolve_path(path)
    doc = yamlfile.load(path)
    top = Fields(whole_node(doc, path), {"fruixops", "bases", "all"}, "inventory")
    here = path.parent
    settings = _settings(top, here, path)
    bases = _bases(top, here, path)
    hosts, groups = _tree(top, here, path)
    for host in hosts.values():
        _check_host(host, bases)
        key = host.vars.get("ssh_key")
        if key and not key.startswith("~"):
            host.vars["ssh_key"] = str(here / key)
    return Inventory(path=path, settings=settings, bases=bases, hosts=hosts, groups=groups)


def _settings(top, here, path):
    if "fruixops" not in top:
        return Settings()
    f = Fields(top.node_of("fruixops"), {"signing_key", "trusted_keys", "known_hosts",
                                        "store", "lab"}, "fruixops settings")
    trusted = []
    for i, _ in enumerate(f.get("trusted_keys", list, [])):
        node = yamlfile.item_node(f.map["trusted_keys"], i, path)
        check_type(node, str, "a trusted key")
        trusted.append(here / node.value)
    opt = lambda key: here / f.get(key, str) if f.get(key, str) else None  # noqa: E731
    return Settings(signing_key=opt("signing_key"), trusted_keys=trusted,
                    known_hosts=opt("known_hosts"), store=opt("store"),
                    lab=f.get("lab", bool, False))


def _bases(top, here, path):
    bases = {}
    if "bases" not in top:
        return bases
    node = top.node_of("bases")
    if not isinstance(node.value, dict):
        raise node.error("bases must be a mapping of base name to declaration")
    for name in node.value:
        knode = key_node(node.value, name, path)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise knode.error(f"bad base name {name!r} (letters, digits, . _ + -)")
        f = Fields(value_node(node.value, name, path),
                   {"version_label", "release", "branch", "source", "boots"}, f"base {name!r}")
        label = f.get("version_label", str, required=True)
        if not NAME_RE.match(label):
            raise f.node_of("version_label").error(f"bad version_label {label!r}")
        bases[name] = BaseDecl(
            name=name, version_label=label,
            release=f.get("release", str, required=True),
            branch=f.get("branch", str, required=True),
            source=_source(f.node_of("source") if "source" in f else
                           _missing(f.node, f"base {name!r} lacks required field 'source'"),
                           here, path),
            boots=f.get("boots", bool, True), where=knode.where)
    return bases


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


def _vars_file(path, kind, name):
    """group_vars/<name>.yaml or host_vars/<name>.yaml beside the inventory."""
    for ext in (".yaml", ".yml"):
        candidate = path.parent / kind / f"{name}{ext}"
        if candidate.exists():
            doc = yamlfile.load(candidate)
            return _check_vars(whole_node(doc, candidate), f"{kind}/{name}")
    return {}


def _check_vars(node, what):
    if not isinstance(node.value, dict):
        raise node.error(f"vars of {what} must be a mapping")
    out = {}
    for key in node.value:
        if key not in HOST_VARS:
            raise key_node(node.value, key, node.path).error(
                f"unknown variable {key!r} in {what} (known: {', '.join(sorted(HOST_VARS))})")
        vnode = value_node(node.value, key, node.path)
        check_type(vnode, HOST_VARS[key], f"variable {key!r}")
        out[key] = (vnode.value, vnode.where)
    return out


def _tree(top, here, path):
    """Walk all/children/hosts; return (hosts, groups)."""
    hosts, groups, host_layers = {}, {}, {}
    if "all" not in top:
        return hosts, groups

    def walk(name, node, inherited, chain):
        if name in chain:
            raise node.error(f"group {name!r} contains itself")
        f = Fields(node, {"vars", "children", "hosts"}, f"group {name!r}")
        own = _vars_file(path, "group_vars", name)
        if "vars" in f:
            own = {**own, **_check_vars(f.node_of("vars"), f"group {name!r}")}
        layers = inherited + [own]
        members = groups.setdefault(name, set())
        if "hosts" in f:
            hnode = f.node_of("hosts")
            if not isinstance(hnode.value, dict):
                raise hnode.error(f"hosts of group {name!r} must be a mapping")
            for hname in hnode.value:
                knode = key_node(hnode.value, hname, path)
                if not isinstance(hname, str) or not NAME_RE.match(hname):
                    raise knode.error(f"bad host name {hname!r}")
                hvalue = value_node(hnode.value, hname, path)
                hvars = {} if hvalue.value is None else _check_vars(hvalue, f"host {hname!r}")
                entry = host_layers.setdefault(hname, {"layers": [], "own": {},
                                                       "groups": [], "where": knode.where})
                # A host listed in several groups takes the vars of each.
                entry["layers"].append(layers)
                entry["own"].update(hvars)
                entry["groups"].extend(g for g in chain + [name] if g not in entry["groups"])
                members.add(hname)
        if "children" in f:
            cnode = f.node_of("children")
            if not isinstance(cnode.value, dict):
                raise cnode.error(f"children of group {name!r} must be a mapping")
            for child in cnode.value:
                knode = key_node(cnode.value, child, path)
                if not isinstance(child, str) or not NAME_RE.match(child):
                    raise knode.error(f"bad group name {child!r}")
                cval = value_node(cnode.value, child, path)
                if cval.value is None:
                    cval = Node({}, path, cval.line, cval.col)
                walk(child, cval, layers, chain + [name])
                members |= groups[child]

    walk("all", top.node_of("all"), [], [])
    for hname, entry in host_layers.items():
        merged = {}
        # Shallower layers first, so deeper (child) groups win; host vars last.
        for layers in sorted(entry["layers"], key=len):
            for depth_vars in layers:
                merged.update(depth_vars)
        merged.update(_vars_file(path, "host_vars", hname))
        merged.update(entry["own"])
        hosts[hname] = Host(name=hname, vars={k: v for k, (v, _) in merged.items()},
                            groups=entry["groups"], where=entry["where"],
                            var_where={k: w for k, (_, w) in merged.items()})
    overlap = set(hosts) & set(groups)
    if overlap:
        raise UserError(f"names used for both a host and a group: {', '.join(sorted(overlap))}",
                        where=str(path))
    return hosts, groups


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
    for svc in host.var("services", []):
        if not isinstance(svc, str) or not NAME_RE.match(svc):
            raise UserError(f"host {host.name}: bad service name {svc!r}",
                            where=where.get("services", host.where))
    for n in host.var("pinned_generations", []):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"host {host.name}: pinned_generations holds generation numbers",
                            where=where.get("pinned_generations", host.where))
    if host.var("compress", "auto") not in ("auto", "zstd", "none"):
        raise UserError(f"host {host.name}: compress must be auto, zstd or none",
                        where=where.get("compress", host.where))
    tar = host.var("lab_tar")
    if tar not in (None, "gnu", "bsdtar"):
        raise UserError(f"host {host.name}: lab_tar must be 'gnu' or 'bsdtar'",
                        where=where.get("lab_tar", host.where))
