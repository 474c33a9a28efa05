"""Fleet runs: one operation on many hosts in parallel (bounded by --forks),
each host's outcome recorded, and a recap in the shape of Ansible's PLAY RECAP.

Exit status: 0 all hosts ok, 2 some host failed, 4 some host unreachable
(4 wins when both happened: the run could not even reach every host).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, FruixopsError, HostUnreachable

DEFAULT_FORKS = 10


@dataclass
class HostOutcome:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    rolled_back: int = 0
    skipped: int = 0
    messages: list = field(default_factory=list)
    results: list = field(default_factory=list)     # JSON-able, one per operation

    @property
    def status(self):
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"

    def to_json(self):
        return {"host": self.host, "status": self.status, "ok": self.ok,
                "changed": self.changed, "failed": self.failed,
                "unreachable": self.unreachable, "rolled_back": self.rolled_back,
                "skipped": self.skipped, "messages": self.messages, "results": self.results}


class Outcomes(dict):
    """host name -> HostOutcome, in the order hosts were first seen."""

    def __init__(self, hosts=()):
        super().__init__((h, HostOutcome(h)) for h in hosts)
        self.lock = threading.Lock()

    def of(self, host):
        with self.lock:
            return self.setdefault(host, HostOutcome(host))

    def exit_status(self):
        if any(o.unreachable for o in self.values()):
            return EXIT_UNREACHABLE
        if any(o.failed for o in self.values()):
            return EXIT_FAILED
        return EXIT_OK

    def recap(self):
        width = max((len(h) for h in self), default=4)
        lines = ["", "PLAY RECAP " + "*" * 60]
        for h, o in self.items():
            lines.append(f"{h:<{width}} : ok={o.ok:<3} changed={o.changed:<3} "
                         f"unreachable={o.unreachable:<3} failed={o.failed:<3} "
                         f"skipped={o.skipped:<3} rolled_back={o.rolled_back}")
        return "\n".join(lines)

    def to_json(self):
        return {"hosts": [o.to_json() for o in self.values()], "exit_status": self.exit_status()}


def run(hosts, job, outcomes, forks=DEFAULT_FORKS):
    """Run job(host) for every host, at most *forks* at a time. job returns
    (changed: bool, json-able detail). Failures are recorded, never raised;
    returns the names of the hosts that failed or were unreachable."""
    bad = []

    def one(host):
        o = outcomes.of(host.name)
        try:
            changed, detail = job(host)
            o.ok += 1
            o.changed += int(bool(changed))
            o.results.append(detail)
        except HostUnreachable as exc:
            o.unreachable += 1
            o.messages.append(str(exc))
            bad.append(host.name)
        except FruixopsError as exc:
            o.failed += 1
            o.messages.append(str(exc))
            result = getattr(exc, "result", None)
            if result is not None:
                o.results.append(result.to_json())
                o.rolled_back += int(getattr(result, "rolled_back", False))
            bad.append(host.name)

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1))) as pool:
        list(pool.map(one, hosts))
    return bad
