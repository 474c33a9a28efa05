"""Host keys as Ansible reads them: ``name``, ``name:port``, ``[v6]:port``, and
ranges that stand for many hosts (``www[01:50].example.com``, ``db-[a:f]``,
``node[0:10:2]``).

A host key that is a name (or address) with an optional ``:port`` is split;
anything else is taken whole as the name, as Ansible does. Ranges are expanded
left to right, the first bracket first.
"""

import ipaddress
import re
import string

from fruixops.errors import UserError

# An [a:b] or [a:b:step] range inside a name: numbers, or one letter each side.
_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)
_V4_PART = rf"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{{1,2}}|{_NUM_RANGE})"
_IPV4 = re.compile(rf"^(?:{_V4_PART}\.){{3}}{_V4_PART}$", re.I)
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_WITH_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def _is_ipv6(text):
    # Ranges may stand for any group of hex digits: check one instance.
    probe = re.sub(_HEX_RANGE, "0", text, flags=re.I)
    try:
        ipaddress.IPv6Address(probe)
    except ValueError:
        return False
    return True


def split_port(address):
    """(host, port) for a host identifier with an optional port, ranges
    allowed; None when *address* is not a host identifier at all."""
    port = None
    m = _BRACKETED_PORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    m = _WITH_PORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    if _IPV4.match(address) or _is_ipv6(address) or _HOSTNAME.match(address):
        return address, port
    return None


def host_key(key, where=None):
    """The host names and the port (or None) that one host key stands for."""
    if not isinstance(key, str):
        raise UserError(f"host name {key!r} must be a string (quote it)", where=where)
    parsed = split_port(key)
    name, port = parsed if parsed else (key, None)
    names = expand(name, where) if "[" in name else [name]
    return names, port


def expand(name, where=None):
    """Every name a ranged name stands for, in order."""
    head, sep, rest = name.partition("[")
    inner, sep2, tail = rest.partition("]")
    if not sep or not sep2:
        raise UserError(f"host range in {name!r} lacks its closing ']'", where=where)
    bounds = inner.split(":")
    if len(bounds) not in (2, 3):
        raise UserError(f"host range [{inner}] in {name!r} must be begin:end or begin:end:step",
                        where=where)
    begin, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise UserError(f"host range [{inner}] in {name!r} lacks its end", where=where)
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise UserError(f"host range [{inner}] in {name!r}: begin and end must have the same "
                        "number of digits", where=where)
    try:
        step_n = int(step)
        if begin in string.ascii_letters and end in string.ascii_letters:
            first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
            if first > last:
                raise UserError(f"host range [{inner}] in {name!r} must have begin <= end",
                                where=where)
            values = list(string.ascii_letters[first:last + 1:step_n])
        else:
            values = [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step_n)]
    except ValueError:
        raise UserError(f"bad host range [{inner}] in {name!r}", where=where) from None
    out = []
    for value in values:
        one = f"{head}{value}{tail}"
        out.extend(expand(one, where) if "[" in one else [one])
    return out
