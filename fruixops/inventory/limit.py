"""Host patterns, as in Ansible's ``--limit`` and a play's ``hosts:``.

A pattern is a list of terms, separated by commas (then a colon is part of a
term), else by colons or whitespace outside brackets. A term is

- a host or group name, or a glob over names (``web*``, ``db?``, ``[wd]*``);
- ``~REGEX``: names that REGEX matches from their start;
- ``NAME[i]``, ``NAME[-1]``, ``NAME[i:j]`` (inclusive), ``NAME[i:]``: hosts by
  position in what NAME (a name or glob) selects, counted from 0 — ``web[1]``
  is the second host of ``web``, not a glob;
- ``@FILE``: one term a line (Ansible's retry files);
- prefixed ``&`` (intersection) or ``!`` (exclusion).

All unions are taken first, in the order written, then intersections, then
exclusions, whatever their place in the pattern; only ``&`` and ``!`` terms
start from ``all``. A group selects its own hosts, then its children's, level
by level, as Ansible lists them. A glob or regex that matches group names
selects their hosts, and also every host whose name it matches.

Refused where Ansible would go on (each a one-line error naming the pattern):
a term that matches no host or group name (Ansible warns and ignores it, so a
typo in ``all:!prodction`` would select production), a pattern that selects no
host, and an empty pattern (Ansible reads it as ``all``).
"""

import fnmatch
import re
from pathlib import Path

from fruixops.inventory import addresses
from fruixops.errors import UserError

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def select(inventory, pattern, where=None):
    """The hosts of *inventory* that *pattern* selects, in Ansible's order."""
    text = "" if pattern is None else str(pattern)
    terms = _expand_files(split(text), text, where)
    if not terms:
        raise UserError("empty host pattern", where=where)
    names = _evaluate(inventory, _ordered(terms), text, where)
    if not names:
        raise UserError(f"host pattern {text!r} matches no host", where=where)
    return [inventory.hosts[n] for n in names]


def split(pattern):
    """The terms of *pattern*, as Ansible splits it."""
    if "," in pattern:
        parts = pattern.split(",")
    elif addresses.split_port(pattern) is not None:
        parts = [pattern]        # one name, or name:port, or an IPv6 address
    else:
        parts = _TERM.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def _expand_files(terms, text, where):
    out = []
    for term in terms:
        if not term.startswith("@"):
            out.append(term)
            continue
        path = Path(term[1:])
        try:
            lines = path.read_text().split("\n")
        except IsADirectoryError:
            raise UserError(f"host pattern {text!r}: {path} is a directory, not a file",
                            where=where) from None
        except OSError as exc:
            raise UserError(f"host pattern {text!r}: cannot read {path}: {exc.strerror}",
                            where=where) from None
        out.extend(line.strip() for line in lines if line.strip())
    return out


def _ordered(terms):
    union = [t for t in terms if t[0] not in "&!"]
    inter = [t for t in terms if t[0] == "&"]
    exclude = [t for t in terms if t[0] == "!"]
    return (union or ["all"]) + inter + exclude


def _evaluate(inventory, terms, text, where):
    chosen = []
    for term in terms:
        if term in inventory.hosts:
            chosen.append(term)
            continue
        that = _match_term(inventory, term, text, where)
        if term[0] == "!":
            gone = set(that)
            chosen = [h for h in chosen if h not in gone]
        elif term[0] == "&":
            kept = set(that)
            chosen = [h for h in chosen if h in kept]
        else:
            have = set(chosen)
            chosen.extend(h for h in that if h not in have)
    out, seen = [], set()
    for h in chosen:
        if h not in seen:
            seen.add(h)
            out.append(h)
    return out


def _match_term(inventory, term, text, where):
    """Host names one term stands for (before & or !), in order, repeats kept."""
    body = term[1:] if term[0] in "&!" else term
    if not body:
        raise UserError(f"host pattern {text!r} has an empty term", where=where)
    expr, subscript = _split_subscript(body)
    regex = _compile(expr, text, where)
    tree = inventory.tree
    groups = [g for g in tree.groups if regex.match(g)]
    found = [h for g in groups for h in tree.members(g)]
    if not groups or expr[0] == "~" or any(c in expr for c in ".?*["):
        found += [h for h in inventory.hosts if regex.match(h)]
    if not found and not groups and expr != "all":
        how = "matches" if expr[0] == "~" or any(c in expr for c in "?*[") else "named"
        raise UserError(f"host pattern {text!r}: no host or group {how} {expr!r}", where=where)
    if not found or subscript is None:
        return found
    start, end = subscript
    if end is None:
        try:
            return [found[start]]
        except IndexError:
            raise UserError(f"host pattern {text!r}: {expr!r} has {len(found)} hosts, "
                            f"no position {start}", where=where) from None
    return found[start:(len(found) if end == -1 else end + 1)]


def _split_subscript(term):
    """(expression, (start, end) or None): ``web[1]`` -> ("web", (1, None))."""
    if term[0] == "~":
        return term, None
    m = _SUBSCRIPT.match(term)
    if not m:
        return term, None
    expr, index, start, _sep, end = m.groups()
    if index is not None:
        return expr, (int(index), None)
    # [i:] runs to the end; Ansible reads an end of 0 as "just i" (an index).
    end = int(end) if end else -1
    return expr, (int(start), end if end else None)


def _compile(expr, text, where):
    try:
        return re.compile(expr[1:] if expr[0] == "~" else fnmatch.translate(expr))
    except re.error as exc:
        raise UserError(f"host pattern {text!r}: bad regular expression {expr!r}: {exc}",
                        where=where) from None
