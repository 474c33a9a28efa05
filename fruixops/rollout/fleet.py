"""Fleet runs: one operation on many hosts in parallel (bounded by --forks),
each host's outcome recorded, and a recap in the shape of Ansible's PLAY RECAP.

Exit status: 0 all hosts ok, 2 some host failed, 4 some host unreachable
(4 wins when both happened: the run could not even reach every host).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fruixops.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, FruixopsError, HostUnreachable
from fruixops.printable import printable_line

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
    # One per operation: JSON-able, or an object with to_json() (a
    # DeployResult), read each time `results` is: a rollout that later rolls
    # the host back changes what it says.
    details: list = field(default_factory=list)

    @property
    def results(self):
        """The operations' results, JSON-able, one per operation."""
        return [d.to_json() if hasattr(d, "to_json") else d for d in self.details]

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
                "skipped": self.skipped, "messages": self.messages,
                "results": self.results}


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
    (changed: bool, detail: JSON-able or with to_json()). Failures are
    recorded, never raised (whatever one host does, the others run and the
    recap is printed); a failure that carries the operation's result (a
    deploy that failed after its switch) counts its change too. Returns the
    names of the hosts that failed or were unreachable."""
    bad = []

    def one(host):
        o = outcomes.of(host.name)
        try:
            changed, detail = job(host)
            o.ok += 1
            o.changed += int(bool(changed))
            o.details.append(detail)
        except HostUnreachable as exc:
            o.unreachable += 1
            o.messages.append(str(exc))
            bad.append(host.name)
        except FruixopsError as exc:
            o.failed += 1
            o.messages.append(str(exc))
            result = getattr(exc, "result", None)
            if result is not None:
                o.details.append(result)
                o.changed += int(bool(getattr(result, "changed", False)))
                o.rolled_back += int(getattr(result, "rolled_back", False))
            bad.append(host.name)
        except Exception as exc:      # noqa: BLE001 -- one host never ends the run
            # A bug (or a host reply no parser foresaw): that host failed,
            # the rest of the fleet goes on and the recap is printed.
            o.failed += 1
            o.messages.append(printable_line(f"{host.name}: fruixops bug, please report it: "
                                             f"{type(exc).__name__}: {exc}"))
            bad.append(host.name)

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1))) as pool:
        list(pool.map(one, hosts))
    return bad


def deploy_many(ctl, hosts, base=None, reboot=False, trial=False, checks=None,
                forks=DEFAULT_FORKS, events=None, compress=None, install_bootloader=False,
                use_cache=True):
    """Deploy to *hosts* in parallel. Every closure is built and signed first,
    once, in this thread, so an item shared by many hosts is built once.
    Returns (Outcomes, one summary line per host that succeeded)."""
    from fruixops.rollout import checks as checks_mod
    from fruixops.rollout import deploy as deploy_mod
    checks = checks if checks is not None else (checks_mod.BOOT_CHECKS if trial else ())
    prepared = {h.name: deploy_mod.prepare(ctl, h.name, base, checks) for h in hosts}
    outcomes, lines = Outcomes(h.name for h in hosts), []

    def job(h):
        try:
            r = deploy_mod.deploy(ctl, h.name, reboot=reboot, trial=trial, checks=checks,
                                  events=events, prepared=prepared[h.name], compress=compress,
                                  install_bootloader=install_bootloader, use_cache=use_cache)
        except deploy_mod.DeployFailed as exc:
            lines.extend(deploy_lines(exc.result, failed=True))
            raise
        lines.extend(deploy_lines(r))
        return r.changed, r

    run(hosts, job, outcomes, forks)
    return outcomes, sorted(lines)


def deploy_lines(r, failed=False):
    """What a deploy did to its host (a DeployResult), for a person: also
    when it failed -- a host switched before it failed is a host changed."""
    pulled = (f", {r.pulled} pulled / {r.bytes_fetched} bytes from the cache"
              if r.pulled else "")
    if r.changed:
        what = (f"generation {r.generation}, {r.items_sent} items / {r.bytes_sent} bytes sent"
                f"{pulled}")
    else:
        what = "nothing switched" if failed else "unchanged (already current)"
    booted = f"; booted generation {r.booted_generation} ({r.booted})" if r.booted else ""
    end = ("; FAILED after the switch" if r.changed else "; FAILED") if failed else ""
    return ([f"{r.host}: {r.base} ({r.version_label}) -> {r.closure}: {what}{booted}{end}"]
            + [f"{r.host}:   {note}" for note in r.notes])


def rollback_many(ctl, hosts, to=None, reboot=False, forks=DEFAULT_FORKS, events=None):
    from fruixops.rollout import deploy as deploy_mod
    outcomes, lines = Outcomes(h.name for h in hosts), []

    def job(h):
        gen, state = deploy_mod.rollback(ctl, h.name, to, reboot=reboot, events=events)
        g = state.gen(gen)
        lines.append(f"{h.name}: current is generation {gen}: {g.base} ({g.version_label}) "
                     f"{g.closure}" + (f"; booted generation {state.booted_generation} "
                                       f"({state.booted})" if reboot else "")
                     + "".join(f"; {n}" for n in getattr(state, "activation_notes", ())))
        return True, state.to_json(h.name)

    run(hosts, job, outcomes, forks)
    return outcomes, sorted(lines)


def status_many(ctl, hosts, forks=DEFAULT_FORKS):
    """Returns (Outcomes, {host: status JSON})."""
    from fruixops.rollout import deploy as deploy_mod
    outcomes, docs = Outcomes(h.name for h in hosts), {}

    def job(h):
        docs[h.name] = deploy_mod.status(ctl, h.name).to_json(h.name)
        return False, docs[h.name]

    run(hosts, job, outcomes, forks)
    return outcomes, docs


def verify_many(ctl, hosts, forks=DEFAULT_FORKS):
    """Returns (Outcomes, lines): drift on a host counts as a failure."""
    from fruixops.rollout import deploy as deploy_mod
    from fruixops.errors import HostError
    outcomes, lines = Outcomes(h.name for h in hosts), []

    def job(h):
        ok, report = deploy_mod.verify(ctl, h.name)
        bad = [ln for ln in report if not ln.startswith(("ok ", "checked "))]
        checked = next((ln.split()[1] for ln in report if ln.startswith("checked ")), "0")
        if not ok:
            for ln in bad:
                lines.append(f"{h.name}: {ln}")
            raise HostError(h.name, f"{len(bad)} of {checked} store items drifted")
        lines.append(f"{h.name}: {checked} store items match what they recorded")
        return False, {"checked": int(checked)}

    run(hosts, job, outcomes, forks)
    return outcomes, sorted(lines)


def plan_many(ctl, hosts, base=None, forks=DEFAULT_FORKS, compress=None, use_cache=True):
    """Returns (Outcomes, {host: Change})."""
    from fruixops.rollout import lifecycle
    outcomes, changes = Outcomes(h.name for h in hosts), {}
    for h in hosts:                      # build once, in this thread
        ctl.closure(h, ctl.inventory.base_for(h, base))

    def job(h):
        changes[h.name] = lifecycle.plan(ctl, h.name, base, compress, use_cache)
        return False, changes[h.name].to_json()

    run(hosts, job, outcomes, forks)
    return outcomes, changes


def gc_many(ctl, hosts, keep, dry_run=False, forks=DEFAULT_FORKS):
    """Returns (Outcomes, {host: GcReport})."""
    from fruixops.rollout import lifecycle
    outcomes, reports = Outcomes(h.name for h in hosts), {}

    def job(h):
        reports[h.name] = lifecycle.gc(ctl, h.name, keep, dry_run=dry_run)
        r = reports[h.name]
        return bool(r.deleted_generations or r.deleted_items) and not dry_run, r.to_json()

    run(hosts, job, outcomes, forks)
    return outcomes, reports
