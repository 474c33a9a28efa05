"""Run a playbook: stages in order, each in batches; a failed batch halts the
rollout (later batches and stages are not touched) and, with
``rollback_on_failure``, puts its hosts back on the generation they had."""

import sys
import time
from dataclasses import dataclass, field

from fruixops.rollout import deploy as deploy_mod
from fruixops.rollout import fleet
from fruixops.inventory import limit as limit_mod
from fruixops.errors import FruixopsError, UserError
from fruixops.rollout.events import Events


@dataclass
class RolloutReport:
    outcomes: fleet.Outcomes
    halted: str | None = None             # why the rollout stopped early
    log: list = field(default_factory=list)

    def to_json(self):
        return {**self.outcomes.to_json(), "halted": self.halted}


def run(ctl, book, limit=None, forks=fleet.DEFAULT_FORKS, events=None, say=print,
        confirm=None):
    """Run *book* (a loaded Playbook) on the controller's inventory."""
    inv = ctl.inventory
    allowed = {h.name for h in limit_mod.select(inv, limit)} if limit else None
    stage_hosts = [[n for n in s.host_names if allowed is None or n in allowed]
                   for s in book.stages]
    everyone = []
    for names in stage_hosts:
        everyone += [n for n in names if n not in everyone]
    if not everyone:
        raise UserError(f"--limit {limit!r} leaves no host in any stage of {book.path}")
    report = RolloutReport(fleet.Outcomes(everyone))
    events = events or Events()

    for si, (stage, names) in enumerate(zip(book.stages, stage_hosts)):
        if not names:
            say(f"STAGE [{stage.name}] no host (after --limit)")
            continue
        hosts = [inv.host(n) for n in names]
        prepared = {}
        if stage.action == "deploy":
            prepared = {h.name: deploy_mod.prepare(ctl, h.name, stage.base, stage.checks)
                        for h in hosts}
        batches = stage.batches(hosts)
        for bi, batch in enumerate(batches):
            say(f"STAGE [{stage.name}] batch {bi + 1}/{len(batches)}: "
                f"{', '.join(h.name for h in batch)}")
            results = {}
            bad = fleet.run(batch, _job(ctl, stage, prepared, results, events),
                            report.outcomes, forks)
            for h in batch:
                state = "FAILED" if h.name in bad else "ok"
                say(f"  {h.name}: {state}" + (f" - {report.outcomes[h.name].messages[-1]}"
                                              if h.name in bad else ""))
            if not bad:
                if bi + 1 < len(batches) or si + 1 < len(book.stages):
                    _pause(stage, say, confirm)
                continue
            share = 100.0 * len(bad) / len(batch)
            batch_failed = share > stage.max_fail_percentage
            if stage.rollback_on_failure and stage.action == "deploy":
                victims = ([h for h in batch if h.name in results or h.name in bad]
                           if batch_failed else [h for h in batch if h.name in bad])
                _roll_back(ctl, stage, victims, results, report, say, events)
            if batch_failed:
                report.halted = (f"stage {stage.name!r} batch {bi + 1}: {len(bad)} of "
                                 f"{len(batch)} hosts failed (> {stage.max_fail_percentage}%)")
                say(f"HALTED: {report.halted}; later batches and stages not touched")
                _skip_rest(report, book, stage_hosts, si, batches, bi)
                return report
    return report


def _job(ctl, stage, prepared, results, events):
    def job(host):
        if stage.action == "rollback":
            gen, state = deploy_mod.rollback(ctl, host.name, reboot=stage.reboot,
                                             checks=True, events=events)
            return True, state.to_json(host.name)
        try:
            r = deploy_mod.deploy(ctl, host.name, reboot=stage.reboot, trial=stage.trial,
                                  checks=stage.checks, events=events,
                                  prepared=prepared[host.name])
        except deploy_mod.DeployFailed as exc:
            results[host.name] = exc.result
            raise
        results[host.name] = r
        return r.changed, r          # its JSON is read at the end: after any rollback
    return job


def _roll_back(ctl, stage, victims, results, report, say, events):
    for h in victims:
        r = results.get(h.name)
        o = report.outcomes.of(h.name)
        if r is None or r.rolled_back or not r.changed or r.previous_generation is None:
            continue    # nothing was switched, or the trial already came back by itself
        try:
            deploy_mod.rollback(ctl, h.name, to=r.previous_generation, reboot=stage.reboot,
                                events=events)
            r.rolled_back = True
            r.notes.append(f"rolled back to generation {r.previous_generation}")
            o.rolled_back += 1
            say(f"  {h.name}: rolled back to generation {r.previous_generation}")
        except FruixopsError as exc:
            o.failed += 1
            o.messages.append(f"rollback failed: {exc}")
            say(f"  {h.name}: ROLLBACK FAILED - {exc}")


def _skip_rest(report, book, stage_hosts, si, batches, bi):
    for batch in batches[bi + 1:]:
        for h in batch:
            report.outcomes.of(h.name).skipped += 1
    for names in stage_hosts[si + 1:]:
        for n in names:
            report.outcomes.of(n).skipped += 1


def _pause(stage, say, confirm):
    if stage.pause == "confirm":
        ask = confirm or _ask
        if not ask(f"stage {stage.name!r}: continue? [y/N] "):
            raise UserError("rollout stopped at a confirm pause")
    elif stage.pause:
        say(f"  pause {stage.pause}s")
        time.sleep(stage.pause)


def _ask(prompt):
    if not sys.stdin.isatty():
        raise UserError("pause: confirm needs a terminal to answer on")
    return input(prompt).strip().lower() in ("y", "yes")
