"""The host and group graph of an inventory, built the way Ansible builds it.

Inventory sources (YAML, INI) call ``add_group``, ``add_host``, ``add_child``
and ``set_var`` in the order their files declare things; ``reconcile`` then
puts every parentless group under ``all`` and every groupless host in
``ungrouped``. What Ansible computes from this graph follows from the order of
these calls, so this module keeps it:

- a group's hosts (``members``): its own hosts first, then its children's,
  level by level (breadth first), each host once;
- a group's depth: the longest path from ``all`` (``all`` is 0);
- the order group variables merge in (``merge_order``): by depth, then
  ``ansible_group_priority``, then name.
"""

import re
from collections import namedtuple

from fruixops.errors import UserError

# A variable's value and where it was set ("file:line:column").
Var = namedtuple("Var", "value where")

# Stricter than Ansible (which warns): a host's name becomes part of a store
# item's name and is recorded on the host; a group's must stay selectable by
# a pattern.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_host_name(name, where):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"bad host name {name!r} (letters, digits, _ . + -)", where=where)


def check_group_name(name, where):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"bad group name {name!r} (letters, digits, _ . + -)", where=where)


class Group:
    def __init__(self, name, where=None):
        self.name = name
        self.where = where
        self.vars = {}        # name -> Var, as declared inline
        self.children = []    # Groups, in the order they were added
        self.parents = []
        self.hosts = []       # names of the hosts declared directly in it
        self.priority = 1
        self.depth = 0

    def __repr__(self):
        return f"Group({self.name!r})"


class HostNode:
    def __init__(self, name, where=None):
        self.name = name
        self.where = where
        self.vars = {}        # name -> Var, as declared inline (ansible_port from name:port)
        self.direct = []      # Groups that list the host themselves


class GroupTree:
    def __init__(self):
        self.groups = {}      # name -> Group, in the order first declared
        self.hosts = {}       # name -> HostNode, in the order first declared
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    # -- building -------------------------------------------------------------

    def add_group(self, name, where=None):
        if name not in self.groups:
            self.groups[name] = Group(name, where)
        return self.groups[name]

    def add_host(self, name, group=None, port=None, where=None):
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostNode(name, where)
            # Ansible sets the port only where the host first appears.
            if port is not None:
                host.vars["ansible_port"] = Var(port, where)
        if group is not None:
            g = self.groups[group]
            if name not in g.hosts:
                g.hosts.append(name)
                host.direct.append(g)
        return host

    def add_child(self, parent, child, where=None):
        p, c = self.groups[parent], self.groups[child]
        if p is c or p in self.descendants(c):
            raise UserError(f"group {child!r} cannot be a child of {parent!r}: "
                            "that makes a loop", where=where)
        if c in p.children:
            return
        p.children.append(c)
        if p not in c.parents:
            c.parents.append(p)
        self._deepen(c, p.depth + 1)

    def _deepen(self, group, depth):
        if depth > group.depth:
            group.depth = depth
            for child in group.children:
                self._deepen(child, depth + 1)

    def set_var(self, target, key, value, where=None):
        """Set a variable on a group or host object, as declared inline."""
        if isinstance(target, Group) and key == "ansible_group_priority":
            target.priority = _priority(value, where)
            return
        target.vars[key] = Var(value, where)

    def reconcile(self):
        """What Ansible does once every source is read."""
        for group in list(self.groups.values()):
            if group.name != "all" and not group.parents:
                self.add_child("all", group.name)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            groups = self.groups_of(host)
            others = {g.name for g in groups} - {"all", "ungrouped"}
            if ungrouped in host.direct:
                if others:
                    ungrouped.hosts.remove(host.name)
                    host.direct.remove(ungrouped)
            elif not others:
                self.add_host(host.name, "ungrouped")

    # -- questions --------------------------------------------------------------

    def ancestors(self, group):
        return _reachable(group, lambda g: g.parents)

    def descendants(self, group):
        return _reachable(group, lambda g: g.children)

    def groups_of(self, host):
        """Every group *host* is in: those that list it and their ancestors."""
        out = []
        for g in host.direct:
            for a in [g] + self.ancestors(g):
                if a not in out:
                    out.append(a)
        return out

    def walk_order(self, group):
        """*group*, its children, then each further level of descendants.

        Ansible walks the levels below the first through a set, so where two
        groups of one level both bring new children its order is arbitrary;
        here it is the order the groups were reached in."""
        ordered = [group] + group.children
        seen = set(ordered)
        level = ordered[:]
        while level:
            following = []
            for g in level:
                for child in g.children:
                    if child not in seen and child not in following:
                        following.append(child)
            ordered.extend(following)
            seen.update(following)
            level = following
        return ordered

    def members(self, name):
        """The hosts of group *name* and of its descendants, in Ansible's order."""
        out, seen = [], set()
        for g in self.walk_order(self.groups[name]):
            for h in g.hosts:
                if h not in seen:
                    seen.add(h)
                    out.append(h)
        return out

    def merge_order(self, groups):
        """Groups in the order their variables merge (later wins)."""
        return sorted(groups, key=lambda g: (g.depth, g.priority, g.name))


def _priority(value, where):
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("+-")
                                            .isdigit()):
        return int(value)
    raise UserError(f"ansible_group_priority must be a number, not {value!r}", where=where)


def _reachable(group, next_of):
    """The groups reachable from *group* through *next_of*, breadth first,
    each once, in the order ansible-core walks them."""
    seen, todo = [], list(next_of(group))
    while todo:
        g = todo.pop(0)
        if g not in seen:
            seen.append(g)
            todo.extend(next_of(g))
    return seen
