"""A live per-host table of a fleet run on a terminal (rich), so that a
person sees every host's phase, items and bytes at once."""

import sys
import threading

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fruixops.rollout.events import Events


class FleetDisplay(Events):
    def __init__(self, hosts, stream=sys.stderr):
        self.rows = {h: {"phase": "waiting", "items": 0, "total": 0, "sent": 0} for h in hosts}
        self.lock = threading.Lock()
        self.console = Console(file=stream)
        self.live = None
        if stream.isatty():
            self.live = Live(self._table(), console=self.console, refresh_per_second=8,
                             transient=False)

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def _table(self):
        t = Table(box=None, pad_edge=False)
        for col in ("host", "phase", "items", "sent"):
            t.add_column(col, justify="right" if col in ("items", "sent") else "left")
        for host, r in self.rows.items():
            sent = f"{r['sent'] / 2**20:.1f}/{r['total'] / 2**20:.1f} MiB" if r["total"] else "-"
            t.add_row(host, r["phase"], str(r["items"]) if r["total"] else "-", sent)
        return t

    def _refresh(self):
        if self.live:
            self.live.update(self._table())

    def phase(self, host, text):
        with self.lock:
            self.rows.setdefault(host, {"phase": "", "items": 0, "total": 0, "sent": 0})
            self.rows[host]["phase"] = text
            self._refresh()

    def start_push(self, host, items, total_bytes):
        with self.lock:
            self.rows[host].update(items=items, total=total_bytes, sent=0)
            self._refresh()

    def sent(self, host, nbytes):
        with self.lock:
            self.rows[host]["sent"] += nbytes
            self._refresh()
