"""Tasks that act on hosts: deploy, rollback, play, reboot, status,
generations, verify, plan, diff, gc. Each parses its arguments and calls the
library."""

import sys

from invoke import Exit

from fruixops.rollout import fleet
from fruixops.controller import Controller
from fruixops.cli.common import (FORKS_HELP, INVENTORY_HELP, LIMIT_HELP, _display, _finish, 
                     _generation_number, _need_host, _print_json, _targets, _usage, user_task)


@user_task(help={"host": "host to deploy to", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "base": "base (default: each host's)",
                 "reboot": "reboot into the new closure and check what booted",
                 "trial": "boot the new generation once; make it current only if it boots "
                          "and its checks pass, else come back to the previous one",
                 "key": "signing key (default: the inventory's)", "inventory": INVENTORY_HELP,
                 "json": "print a machine-readable result per host",
                 "check": "change nothing: show what the deploy would do (as inv plan)",
                 "compress": "item transfers: auto (zstd when the host has it; default), "
                             "zstd, none",
                 "install_bootloader": "also install the base's bootloader (loader.efi on the "
                                       "ESP, /boot/lua) when it differs; the old one is kept "
                                       "as .old",
                 "no_cache": "push every item over SSH, even with a cache in the inventory"})
def deploy(c, host=None, limit=None, base=None, reboot=False, trial=False, key=None,
           inventory=None, forks=fleet.DEFAULT_FORKS, json=False, check=False, compress=None,
           install_bootloader=False, no_cache=False):
    """Build, push only the missing items, switch the hosts' boot generation."""
    ctl = Controller(inventory, key=key)
    hosts = _targets(ctl, host, limit, "deploy")
    if check:
        return _plan(ctl, hosts, base, forks, json, compress, not no_cache)
    with _display(hosts, json) as display:
        outcomes, lines = fleet.deploy_many(ctl, hosts, base, reboot=reboot, trial=trial,
                                            forks=forks, events=display, compress=compress,
                                            install_bootloader=install_bootloader,
                                            use_cache=not no_cache)
    _finish(outcomes, json, lines)


@user_task(help={"host": "host to roll back", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "to": "generation number (default: each host's rollback generation)",
                 "reboot": "reboot and check what booted",
                 "inventory": INVENTORY_HELP, "json": "print a machine-readable result"})
def rollback(c, host=None, limit=None, to=None, reboot=False, inventory=None,
             forks=fleet.DEFAULT_FORKS, json=False):
    """Make the previous generation (or --to N) current again; the store is untouched."""
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "rollback")
    with _display(hosts, json) as display:
        outcomes, lines = fleet.rollback_many(ctl, hosts, _generation_number(to), reboot=reboot,
                                              forks=forks, events=display)
    _finish(outcomes, json, lines)


@user_task(positional=["playbook"],
           help={"playbook": "playbook file (playbooks/NAME.yaml)", "limit": LIMIT_HELP,
                 "forks": FORKS_HELP, "inventory": INVENTORY_HELP, "key": "signing key",
                 "json": "print a machine-readable result per host"})
def play(c, playbook=None, limit=None, forks=fleet.DEFAULT_FORKS, inventory=None, key=None,
         json=False):
    """Run a staged rollout: canary, batches, checks, halt and roll back on failure."""
    from fruixops.rollout import playbook as playbook_mod
    from fruixops.rollout import play as rollout
    if not playbook:
        raise _usage("play needs a playbook file: inv play playbooks/NAME.yaml")
    ctl = Controller(inventory, key=key)
    book = playbook_mod.load(playbook, ctl.inventory)
    out = (lambda line: print(line, file=sys.stderr)) if json else print
    report = rollout.run(ctl, book, limit=limit, forks=forks, say=out)
    if json:
        _print_json(report.to_json())
    else:
        print(report.outcomes.recap())
    if report.outcomes.exit_status():
        raise Exit(code=report.outcomes.exit_status())


@user_task(help={"host": "host to reboot", "inventory": INVENTORY_HELP})
def reboot(c, host=None, inventory=None):
    """Reboot a host, wait for it, and report what it booted."""
    from fruixops.rollout import deploy as deploy_mod
    _need_host(host, "reboot")
    state = deploy_mod.reboot_host(Controller(inventory), host)
    if state.booted_unknown:
        what = f"unknown ({state.booted_unknown})"
    elif state.booted:
        what = f"generation {state.booted_generation} ({state.booted})"
    else:
        what = "bare (no generation)"
    print(f"{host}: booted {what}")
    if state.kernel_mismatch():
        print(f"{host}: warning: {state.kernel_mismatch()}")


@user_task(help={"host": "host to ask", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "inventory": INVENTORY_HELP, "json": "print JSON"})
def status(c, host=None, limit=None, inventory=None, forks=fleet.DEFAULT_FORKS, json=False):
    """What hosts booted, and their current and rollback generations."""
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "status")
    outcomes, docs = fleet.status_many(ctl, hosts, forks=forks)
    if json and host:
        if host in docs:
            _print_json(docs[host])
        _finish(outcomes, False)
        return
    if json:
        _finish(outcomes, True)
        return
    lines = []
    for h in hosts:
        doc = docs.get(h.name)
        if doc is None:
            continue
        lines.append(f"host:      {h.name}")
        for key in ("booted", "default", "next_boot", "current", "rollback"):
            g = doc[key]
            if g and g.get("unknown"):
                what = f"unknown ({g['unknown']})"
            elif g:
                what = (f"generation {g['generation']}: {g['base']} ({g['version_label']}) "
                        f"{g['closure']}")
            else:
                what = "-"
            lines.append(f"{key + ':':10} {what}")
        booted = doc["booted"] or {}
        if booted.get("kernel"):
            lines.append(f"{'kernel:':10} {booted['kernel']}")
        lines += [f"warning:   loader file {f}" for f in doc["loader_overrides"]]
        if booted.get("kernel_mismatch"):
            lines.append(f"warning:   {booted['kernel_mismatch']}")
        if doc.get("boot_fs") not in (None, "same"):
            lines.append("warning:   /frx/store is not on /boot's file system: FreeBSD's "
                         "loader cannot load a generation's kernel from it")
    _finish(outcomes, False, lines)


@user_task(help={"host": "host to ask", "inventory": INVENTORY_HELP, "json": "print JSON"})
def generations(c, host=None, inventory=None, json=False):
    """Every generation on a host, with current / rollback / booted / next-boot marks."""
    import time as timemod
    from fruixops.rollout import deploy as deploy_mod
    _need_host(host, "generations")
    state = deploy_mod.status(Controller(inventory), host)
    rows = []
    for n in sorted(state.generations):
        g = state.generations[n]
        marks = [m for m, on in (("booted", n == state.booted_generation),
                                 ("default", n == state.default),
                                 ("next-boot", n == state.next_boot),
                                 ("current", n == state.current),
                                 ("rollback", n == state.rollback)) if on]
        rows.append({**g.to_json(), "marks": marks})
    if json:
        _print_json(rows)
        return
    print(f"{'GEN':>4}  {'WHEN (UTC)':19}  {'BASE':15} {'LABEL':16} {'SIGNER':8} "
          f"{'DEPLOYER':18} {'SIZE':>9}  MARKS  CLOSURE")
    for r in rows:
        when = (timemod.strftime("%Y-%m-%d %H:%M:%S", timemod.gmtime(r["received"]))
                if r["received"] else "-")
        print(f"{r['generation']:>4}  {when:19}  {r['base'] or '-':15} "
              f"{r['version_label'] or '-':16} {r['signer'] or '-':8} {r['deployer'] or '-':18} "
              f"{_mib(r['size']):>9}  {','.join(r['marks']) or '-':6} {r['closure']}")


def _mib(n):
    return "-" if n is None else f"{n / 2**20:.1f}MiB"


@user_task(help={"host": "host to check", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "inventory": INVENTORY_HELP, "json": "print a machine-readable result"})
def verify(c, host=None, limit=None, inventory=None, forks=fleet.DEFAULT_FORKS, json=False):
    """Re-hash every store item on the hosts against what it recorded; report drift."""
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "verify")
    outcomes, lines = fleet.verify_many(ctl, hosts, forks=forks)
    _finish(outcomes, json, lines)


def _plan(ctl, hosts, base, forks, json, compress=None, use_cache=True):
    from fruixops.rollout import lifecycle
    outcomes, changes = fleet.plan_many(ctl, hosts, base, forks=forks, compress=compress,
                                        use_cache=use_cache)
    if json:
        if len(hosts) == 1 and hosts[0].name in changes:
            _print_json(changes[hosts[0].name].to_json())
            _finish(outcomes, False)
        else:
            _finish(outcomes, True)
        return
    _finish(outcomes, False, [lifecycle.format_change(changes[h.name])
                              for h in hosts if h.name in changes])


@user_task(help={"host": "host to plan for", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "base": "base (default: each host's)", "key": "signing key",
                 "inventory": INVENTORY_HELP, "json": "print JSON",
                 "no_cache": "as a deploy with --no-cache would: every item pushed"})
def plan(c, host=None, limit=None, base=None, key=None, inventory=None,
         forks=fleet.DEFAULT_FORKS, json=False, no_cache=False):
    """What a deploy would do, changing nothing: closures, base and label old -> new,
    items added and removed with sizes, bytes to send (and to pull from the cache),
    whether a reboot is needed."""
    ctl = Controller(inventory, key=key)
    _plan(ctl, _targets(ctl, host, limit, "plan"), base, forks, json, use_cache=not no_cache)


@user_task(name="diff", help={"host": "host", "from_": "generation (default: rollback)",
                              "to": "generation (default: current)",
                              "inventory": INVENTORY_HELP, "json": "print JSON"})
def diff_generations(c, host=None, from_=None, to=None, inventory=None, json=False):
    """Compare two generations on a host: closures, base, label, items and sizes."""
    from fruixops.rollout import lifecycle
    _need_host(host, "diff")
    change = lifecycle.diff(Controller(inventory), host, _generation_number(from_),
                            _generation_number(to))
    if json:
        _print_json(change.to_json())
        return
    print(lifecycle.format_change(change, title=(
        f"{host}: generation {change.old_generation} {change.old_base} ({change.old_label}) -> "
        f"generation {change.new_generation} {change.new_base} ({change.new_label})")))


@user_task(help={"host": "host to collect", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "keep": "generations to keep, newest first (the booted, default, next-boot, "
                         "trial, current, rollback and pinned ones are always kept)",
                 "dry_run": "list what would go; delete nothing",
                 "inventory": INVENTORY_HELP, "json": "print JSON"})
def gc(c, host=None, limit=None, keep=None, dry_run=False, inventory=None,
       forks=fleet.DEFAULT_FORKS, json=False):
    """Delete old generations and the store items nothing refers to any more."""
    if keep is None or not str(keep).isdigit():
        raise _usage("gc needs --keep N (a number of generations)")
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "gc")
    outcomes, reports = fleet.gc_many(ctl, hosts, int(keep), dry_run=dry_run, forks=forks)
    lines = []
    for h in hosts:
        r = reports.get(h.name)
        if r is None:
            continue
        verb = "would delete" if dry_run else "deleted"
        lines.append(f"{h.name}: {verb} generations {r.deleted_generations or '-'}, "
                     f"{len(r.deleted_items)} store items, {r.freed} bytes "
                     f"({r.freed / 2**20:.1f} MiB); kept "
                     + (", ".join(f"{n} ({why})" for n, why in sorted(r.kept.items())) or "-"))
        if dry_run:
            lines += [f"  {p} {b}" for p, b in r.deleted_items]
    _finish(outcomes, json, lines)
