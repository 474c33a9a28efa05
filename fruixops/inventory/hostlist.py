"""What an inventory holds, shown without contacting any host: the selected
hosts, the group tree and each host's merged variables, in the shapes of
``ansible-inventory --list``, ``--graph`` and ``--host``."""

import json

from fruixops.inventory import limit


def selected(inventory, pattern=None):
    """The hosts *pattern* selects (all hosts when None), in Ansible's order."""
    if pattern is None:
        return [inventory.hosts[n] for n in inventory.tree.members("all")]
    return limit.select(inventory, pattern)


def listing(inventory, hosts, with_vars=True):
    """``ansible-inventory --list``: each group's own hosts (of *hosts*) and
    children, and ``_meta.hostvars`` (the merged variables)."""
    keep = {h.name for h in hosts}
    out = {}
    for group in inventory.tree.groups.values():
        entry = {}
        if group.name != "all":
            own = [h for h in group.hosts if h in keep]
            if own:
                entry["hosts"] = own
        if group.children:
            entry["children"] = [c.name for c in group.children]
        if entry:
            out[group.name] = entry
    out["_meta"] = {"hostvars": {h.name: h.ansible_vars for h in hosts} if with_vars else {}}
    return out


def graph(inventory, hosts, with_vars=False, group="all"):
    """``ansible-inventory --graph``: the tree from *group*, lines of text."""
    keep = {h.name for h in hosts}
    lines = []

    def draw(g, depth):
        lines.append(_indent(depth) + f"@{g.name}:")
        for child in g.children:
            draw(child, depth + 1)
        if g.name != "all":
            for name in g.hosts:
                if name in keep:
                    lines.append(_indent(depth + 1) + name)
                    if with_vars:
                        lines.extend(_indent(depth + 2) + line
                                     for line in _var_lines(inventory.hosts[name].ansible_vars))

    draw(inventory.tree.groups[group], 0)
    return lines


def _indent(depth):
    return "  |" * depth + "--" if depth else ""


def _var_lines(variables):
    return [f"{{{k} = {json.dumps(v, default=str)}}}" for k, v in sorted(variables.items())]


def host_lines(hosts, with_vars=False):
    """One host a line; with *with_vars*, its merged variables under it."""
    lines = []
    for h in hosts:
        lines.append(h.name)
        if with_vars:
            lines.extend("  " + line for line in _var_lines(h.ansible_vars))
    return lines
