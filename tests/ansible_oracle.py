"""ansible-core as the oracle: what it selects for a pattern and what it
merges for a host, asked in-process (InventoryManager, VariableManager), the
way `ansible-inventory --host` and `ansible PATTERN --list-hosts` ask; and how
it would reach a host (address, port, user, key, privilege escalation), asked
the way its task executor asks the ssh connection and become plugins, with
the host's variables templated by its Templar.

Also the same questions put to fruixops (`fruixops_select`, `fruixops_reach`),
and `canon`, which makes both answers comparable type for type (True is not 1
here)."""

import datetime
import fnmatch
import os
import re
import tempfile
import warnings

_HOME = tempfile.mkdtemp(prefix="fruixops-oracle-")
os.environ.update({
    "ANSIBLE_CONFIG": os.path.join(_HOME, "ansible.cfg"),   # no project or user config
    "ANSIBLE_HOME": _HOME, "ANSIBLE_LOCAL_TEMP": _HOME,
    "ANSIBLE_HOST_PATTERN_MISMATCH": "error",   # a term that names nothing: refused by fruixops
    "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_NOCOLOR": "1",
})
open(os.environ["ANSIBLE_CONFIG"], "w").close()

from ansible import constants as C  # noqa: E402
from ansible.errors import AnsibleError  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.module_utils.parsing.convert_bool import boolean  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.playbook.play_context import PlayContext  # noqa: E402
from ansible.plugins.loader import become_loader, connection_loader  # noqa: E402
from ansible.plugins.vars import host_group_vars  # noqa: E402
from ansible.template import Templar  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402

from fruixops.remote import access  # noqa: E402
from fruixops.inventory import model as inventory_mod  # noqa: E402
from fruixops.inventory import limit  # noqa: E402
from fruixops.errors import UserError  # noqa: E402

Display().verbosity = -1
with warnings.catch_warnings():     # ssh's agent support imports DSA, deprecated by cryptography
    warnings.simplefilter("ignore")
    connection_loader.get("ssh", PlayContext(), None)

REFUSED = "refused"     # an answer: the pattern is an error (fruixops) / AnsibleError or no match


class Oracle:
    """One inventory (its sources) as ansible-core reads it."""

    def __init__(self, sources):
        # host_group_vars caches what it found by path for the process's life.
        host_group_vars.FOUND.clear()
        host_group_vars.NAK.clear()
        self.loader = DataLoader()
        self.loader.set_basedir(_HOME)
        self.im = InventoryManager(loader=self.loader, sources=[str(s) for s in sources])
        self.vm = VariableManager(loader=self.loader, inventory=self.im)

    @property
    def hosts(self):
        return list(self.im.hosts)

    def select(self, pattern):
        try:
            found = [h.name for h in self.im.get_hosts(pattern)]
        except AnsibleError:
            return REFUSED
        return found or REFUSED

    def limit(self, pattern):
        """The hosts --limit PATTERN leaves of `all` (this is where @file works)."""
        self.im.subset(pattern)
        try:
            found = [h.name for h in self.im.get_hosts("all")]
        except AnsibleError:
            return REFUSED
        finally:
            self.im.subset(None)
        return found or REFUSED

    def host_vars(self, name):
        found = self.vm.get_vars(host=self.im.get_host(name), include_hostvars=False, stage="all")
        return {k: v for k, v in found.items() if k not in magic_names()}

    def reach(self, name, basedir):
        """How a task would reach host *name*: {host, port, user, key, become,
        become_method, become_user}, or REFUSED where templating a variable
        or typing an option fails. *basedir* is the playbook's directory
        (where `pipe` runs and `file` looks)."""
        found = self.vm.get_vars(host=self.im.get_host(name), include_hostvars=True, stage="all")
        self.loader.set_basedir(str(basedir))
        try:
            return _reach(found, Templar(loader=self.loader, variables=found))
        except (AnsibleError, TypeError, ValueError):
            return REFUSED
        finally:
            self.loader.set_basedir(_HOME)

    def undetermined_groups(self):
        """Groups whose host order ansible-core takes from a set of groups
        (object addresses): two groups of one level both bring new children."""
        out = set()
        for group in self.im.groups.values():
            seen = {group, *group.child_groups}
            level = set(seen)
            while level:
                bringing = [g for g in level if any(c not in seen for c in g.child_groups)]
                if len(bringing) > 1:
                    out.add(group.name)
                    break
                following = {c for g in level for c in g.child_groups} - seen
                seen |= following
                level = following
        return out


def _reach(found, templar):
    # As TaskExecutor._set_connection_options: every variable of the
    # plugin's options that is set is templated, then each option resolved.
    ssh = connection_loader.get("ssh", PlayContext(), None)
    ssh.set_options(var_options=ssh._resolve_option_variables(found, templar))
    out = {"host": ssh.get_option("host"), "port": ssh.get_option("port"),
           "user": ssh.get_option("remote_user"), "key": ssh.get_option("private_key_file")}
    # As TaskExecutor._set_become_plugin and _set_plugin_options("become").
    on = found.get("ansible_become") is not None and boolean(templar.template(found["ansible_become"]))
    out["become"] = on
    if on:
        method = (templar.template(found["ansible_become_method"])
                  if found.get("ansible_become_method") else C.DEFAULT_BECOME_METHOD)
        plugin = become_loader.get(method)
        if plugin is None:
            raise AnsibleError(f"no become plugin {method!r}")
        names = C.config.get_plugin_vars("become", plugin._load_name)
        plugin.set_options(var_options={k: templar.template(found[k]) for k in names if k in found})
        out.update(become_method=method, become_user=plugin.get_option("become_user"))
    return out


_MAGIC = []


def magic_names():
    """Variables ansible-core adds to every host (inventory_hostname, groups, ...)."""
    if not _MAGIC:
        d = tempfile.mkdtemp(dir=_HOME)
        path = os.path.join(d, "probe.yaml")
        with open(path, "w") as f:
            f.write("all: {hosts: {probe: {}}}\n")
        o = Oracle.__new__(Oracle)
        o.loader = DataLoader()
        o.loader.set_basedir(_HOME)
        o.im = InventoryManager(loader=o.loader, sources=[path])
        o.vm = VariableManager(loader=o.loader, inventory=o.im)
        _MAGIC.append(set(o.vm.get_vars(host=o.im.get_host("probe"), include_hostvars=False,
                                        stage="all")) | {"inventory_file", "inventory_dir"})
    return _MAGIC[0]


def fruixops_select(inv, pattern):
    try:
        return [h.name for h in limit.select(inv, pattern)]
    except UserError:
        return REFUSED


def fruixops_reach(inv, name):
    """The same answer from fruixops, or REFUSED."""
    try:
        host = inv.hosts[name]
        out = {"host": host.ssh_host, "port": host.var("ssh_port"), "user": host.var("ssh_user"),
               "key": host.var("ssh_key")}
        found = access.become(host)
        out["become"] = found is not None
        if found is not None:
            out.update(become_method=found[0], become_user=found[1])
        return out
    except UserError:
        return REFUSED


def refused_by_fruixops(ansible):
    """Where fruixops refuses what Ansible would do (docs/inventory.md,
    docs/access.md): a port outside 1-65535, privilege escalation other than
    doas or sudo to root."""
    if ansible == REFUSED:
        return False
    port = ansible["port"]
    return ((port is not None and not 1 <= port <= 65535)
            or (ansible["become"] and (ansible["become_method"] not in access.BECOME_METHODS
                                       or ansible["become_user"] != "root")))


def compare_reach(inv, oracle, basedir):
    """[(host, ansible's answer, fruixops's)] that differ."""
    differ = []
    for name in oracle.hosts:
        want = oracle.reach(name, basedir)
        if refused_by_fruixops(want):
            want = REFUSED
        got = fruixops_reach(inv, name)
        if canon(want) != canon(got):
            differ.append((name, want, got))
    return differ


def load_fruixops(sources):
    return inventory_mod.load([str(s) for s in sources], warn=lambda line: None)


def canon(value):
    """A value with its type spelled out, so that 1, 1.0 and True differ."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", float(value))
    if isinstance(value, str):
        return ("str", str.__str__(value))
    if value is None:
        return None
    if isinstance(value, dict):
        return {str.__str__(k) if isinstance(k, str) else canon(k): canon(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return ("time", value.isoformat())
    return ("other", repr(value))


def touched_groups(oracle, pattern):
    """Names of the groups any term of *pattern* could match (and `all`,
    which a pattern of only & and ! terms starts from)."""
    terms = [t for t in re.split(r"[,:\s]+", re.sub(r"\[[-0-9:]*\]", "", pattern)) if t]
    out = set() if any(t[0] not in "&!" for t in terms) else {"all"}
    for term in terms:
        body = term.lstrip("&!")
        if not body or body.startswith("@"):
            continue
        expr = body
        try:
            rx = re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr))
        except re.error:
            continue
        out |= {g for g in oracle.im.groups if rx.match(g)}
    return out


def compare_patterns(inv, oracle, patterns, undetermined):
    """[(pattern, ansible, fruixops)] that differ; and how many were only
    compared as sets or skipped because ansible-core's order is arbitrary."""
    differ, as_sets, skipped = [], 0, 0
    for pattern in patterns:
        want, got = oracle.select(pattern), fruixops_select(inv, pattern)
        loose = touched_groups(oracle, pattern) & undetermined
        if loose and want != REFUSED and got != REFUSED:
            if re.search(r"\[-?[0-9]+(?::[0-9]*)?\]", pattern):
                skipped += 1
                continue
            as_sets += 1
            want, got = sorted(want), sorted(got)
        if want != got:
            differ.append((pattern, want, got))
    return differ, as_sets, skipped


def compare_vars(inv, oracle):
    """[(host, ansible vars, fruixops vars)] that differ."""
    differ = []
    for name in oracle.hosts:
        want = canon(oracle.host_vars(name))
        got = canon(inv.hosts[name].ansible_vars) if name in inv.hosts else None
        if want != got:
            differ.append((name, want, got))
    return differ
