"""What a running operation tells the person watching: per-host phases and
bytes sent. The default shows single-host progress on a terminal; fleet runs
use ``display.FleetDisplay``."""

import sys
import threading
import time


class Events:
    """Receives progress; the base class ignores it."""

    def phase(self, host, text):
        pass

    def start_push(self, host, items, total_bytes):
        pass

    def sent(self, host, nbytes):
        pass


class ConsoleEvents(Events):
    """One host's push progress on a terminal (stderr), nothing otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.lock = threading.Lock()
        self.pushes = {}

    def start_push(self, host, items, total_bytes):
        self.pushes[host] = {"items": items, "total": total_bytes, "sent": 0, "shown": 0.0}

    def sent(self, host, nbytes):
        with self.lock:
            p = self.pushes[host]
            p["sent"] += nbytes
            finished = p["sent"] >= p["total"]
            now = time.monotonic()
            if self.tty and p["shown"] is not None and (now - p["shown"] > 0.1 or finished):
                p["shown"] = None if finished else now      # the last line is written once
                self.stream.write(f"\r{host}: sending {p['items']} items "
                                  f"{p['sent'] / 2**20:8.1f} / {p['total'] / 2**20:.1f} MiB"
                                  + ("\n" if finished else ""))
                self.stream.flush()
