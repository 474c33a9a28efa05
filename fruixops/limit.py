"""Host patterns, as in Ansible's --limit: names, groups, globs, and
``a:b`` (union), ``a:&b`` (intersection), ``a:!b`` (exclusion).

Unions are taken first, then intersections, then exclusions, whatever their
order in the pattern. A name that is neither a host nor a group, and a
pattern that matches nothing, are errors that name the pattern.
"""

import fnmatch
import re

from .errors import UserError

_GLOB = re.compile(r"[*?\[]")


def select(inventory, pattern, where=None):
    """The hosts of *inventory* matching *pattern*, in inventory order."""
    if pattern is None or not str(pattern).strip():
        raise UserError("empty host pattern", where=where)
    pattern = str(pattern).strip()
    union, inter, exclude = set(), [], set()
    have_union = False
    for term in re.split(r"[:,]", pattern):
        term = term.strip()
        if not term:
            raise UserError(f"host pattern {pattern!r} has an empty term", where=where)
        if term.startswith("&"):
            inter.append(_resolve(inventory, term[1:], pattern, where))
        elif term.startswith("!"):
            exclude |= _resolve(inventory, term[1:], pattern, where)
        else:
            union |= _resolve(inventory, term, pattern, where)
            have_union = True
    chosen = union if have_union else set(inventory.hosts)
    for s in inter:
        chosen &= s
    chosen -= exclude
    if not chosen:
        raise UserError(f"host pattern {pattern!r} matches no host", where=where)
    return [h for h in inventory.hosts.values() if h.name in chosen]


def _resolve(inventory, term, pattern, where):
    if not term:
        raise UserError(f"host pattern {pattern!r} has an empty term", where=where)
    if term == "all":
        return set(inventory.hosts)
    if _GLOB.search(term):
        found = {h for h in inventory.hosts if fnmatch.fnmatchcase(h, term)}
        for g, members in inventory.groups.items():
            if fnmatch.fnmatchcase(g, term):
                found |= members
        return found
    if term in inventory.hosts:
        return {term}
    if term in inventory.groups:
        return set(inventory.groups[term])
    raise UserError(f"host pattern {pattern!r}: no host or group named {term!r}", where=where)
