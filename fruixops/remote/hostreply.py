"""What a host says, treated as hostile.

A host's replies come from a machine that may be compromised: each is
parsed strictly, and a malformed one fails that host with one line (exit 2),
never a traceback. (Printing them safely is printable.py's part; limits on
their size and on the time they take, connection.py's.)
"""

import re

from fruixops.errors import HostError
from fruixops.printable import printable_line
from fruixops.store.local import StorePath


class MalformedReply(HostError):
    """A host answered something that is not what the receiver prints."""

    def __init__(self, host, what, line=None):
        shown = "" if line is None else f": {excerpt(line)}"
        super().__init__(host, f"malformed reply to {what}{shown}; is the host compromised?")


def excerpt(line, width=80):
    """*line* quoted for a message: escaped, cut at *width* characters."""
    line = printable_line(line)
    return "'" + (line if len(line) <= width else line[:width] + "...") + "'"


_NUMBER = re.compile(r"^[0-9]{1,18}$")


def is_sha256(text):
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def number(host, what, text, line=None):
    """A non-negative integer the host printed (at most 18 digits)."""
    if not _NUMBER.match(text or ""):
        raise MalformedReply(host, what, line if line is not None else text)
    return int(text)


def optional_number(host, what, text, line=None):
    return None if text in (None, "") else number(host, what, text, line)


def store_path(host, what, text, line=None):
    """A store path the host printed, as a string."""
    try:
        return str(StorePath(text))
    except (ValueError, TypeError):
        raise MalformedReply(host, what, line if line is not None else text) from None


def fields(host, what, text, required, optional=()):
    """``key value`` lines (the receiver's closing answers): each of
    *required* exactly once, those of *optional* at most once, nothing else.
    Returns {key: value}."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" ")
        if not sep or key not in (*required, *optional) or key in found:
            raise MalformedReply(host, what, line)
        found[key] = value
    missing = [k for k in required if k not in found]
    if missing:
        raise MalformedReply(host, what, f"no {missing[0]!r} line")
    return found
