"""uids and gids, assigned on the controller, never by a host.

A declared account without a number gets the lowest free one from 1001 up
(FreeBSD's adduser(8) starts there) the first time the fleet sees it, and
keeps it: the ledger (a small JSON file, ``fruixops: ids:`` in the inventory,
by default ``ids.json`` in the controller's store) records every number given.
The same declarations and the same ledger give the same system, and an
account has one number on every host of the fleet. Commit the ledger with the
inventory when several controllers deploy one fleet.
"""

import json
import os
import tempfile
from pathlib import Path

from fruixops.errors import UserError

FIRST = 1001
LAST = 32766       # below nobody (65534) and FreeBSD's 32767 ceiling of pw.conf's default


class Ledger:
    def __init__(self, path):
        self.path = Path(path)
        self.data = {"users": {}, "groups": {}}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.data = {k: {str(n): int(v) for n, v in raw.get(k, {}).items()}
                             for k in ("users", "groups")}
            except (ValueError, AttributeError, TypeError) as exc:
                raise UserError(f"the id ledger is not readable JSON ({exc})",
                                where=str(self.path)) from None
        self.changed = False

    def assign(self, kind, name, wanted, taken):
        """The number of account *name* (kind "users" or "groups"): *wanted*
        when declared (and recorded), else the ledger's, else the lowest free."""
        book = self.data[kind]
        if wanted is not None:
            if book.get(name) != wanted:
                book[name] = wanted
                self.changed = True
            return wanted
        if name in book:
            return book[name]
        used = set(book.values()) | set(taken)
        n = FIRST
        while n in used:
            n += 1
        if n > LAST:
            raise UserError(f"no free {kind[:-1]} id left for {name}", where=str(self.path))
        book[name] = n
        self.changed = True
        return n

    def save(self):
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ids.")
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, indent=1, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self.changed = False
