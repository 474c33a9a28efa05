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
        self.pushes[host] = [items, total_bytes, 0, 0.0]

    def sent(self, host, nbytes):
        with self.lock:
            p = self.pushes[host]
            p[2] += nbytes
            now = time.monotonic()
            if self.tty and (now - p[3] > 0.1 or p[2] >= p[1]):
                p[3] = now
                self.stream.write(f"\r{host}: sending {p[0]} items "
                                  f"{p[2] / 2**20:8.1f} / {p[1] / 2**20:.1f} MiB")
                if p[2] >= p[1]:
                    self.stream.write("\n")
                self.stream.flush()
