"""The command line: Invoke tasks that parse arguments and call the library.

``tasks.py`` at the project root re-exports this namespace for ``inv``; the
``fruixops`` console script runs the same tasks. Errors a user can cause print
one line and exit with the status documented in the README.
"""

import functools
import json as jsonlib
import sys

from invoke import Collection, Exit, Program, task

from . import __version__, fleet, keys
from . import limit as limit_mod
from .controller import Controller
from .errors import EXIT_FAILED, FruixopsError


def user_task(*args, **kwargs):
    """@task without auto short flags (so --host never becomes -h), turning
    FruixopsError into one line on stderr and its exit status."""
    kwargs.setdefault("auto_shortflags", False)

    def wrap(fn):
        @functools.wraps(fn)
        def run(c, *a, **kw):
            try:
                return fn(c, *a, **kw)
            except FruixopsError as exc:
                print(f"fruixops: {exc}", file=sys.stderr)
                raise Exit(code=exc.exit_status) from None
            except KeyboardInterrupt:
                print("fruixops: interrupted", file=sys.stderr)
                raise Exit(code=130) from None
        return task(*args, **kwargs)(run)
    return wrap


INVENTORY_HELP = "inventory file (default: $FRUIXOPS_INVENTORY or inventories/lab.yaml)"


@user_task(help={"base": "base to build", "host": "also build this host's system",
                 "inventory": INVENTORY_HELP})
def build(c, base=None, host=None, inventory=None):
    """Build a base's items (and a host's system); print their store paths."""
    for path in Controller(inventory).build(base, host):
        print(path)


@user_task(help={"host": "host the manifest is for", "base": "base (default: the host's)",
                 "out": "directory to write manifest and manifest.sig into",
                 "key": "signing key (default: the inventory's)", "inventory": INVENTORY_HELP})
def manifest(c, host=None, base=None, out=None, key=None, inventory=None):
    """Build a host's closure and write its signed manifest to --out DIR."""
    if not host or not out:
        raise _usage("manifest needs --host HOST and --out DIR")
    m, mpath, spath = Controller(inventory, key=key).write_manifest(host, base, out)
    print(mpath)
    print(spath)


@user_task(name="generate", help={"name": "key name: writes keys/NAME.key and keys/NAME.pub",
                                  "dir": "directory (default: keys)",
                                  "passphrase": "encrypt the private key (prompted when "
                                                "given as '-')"})
def keys_generate(c, name=None, dir="keys", passphrase=None):
    """Make an Ed25519 signing key pair; the private key is never printed."""
    if not name:
        raise _usage("keys.generate needs --name NAME")
    if passphrase == "-":
        import getpass
        passphrase = getpass.getpass("passphrase: ")
    key_path, pub_path = keys.generate(dir, name, passphrase=passphrase)
    print(f"private key: {key_path} (mode 0600, git-ignored)")
    print(f"public key:  {pub_path}")


def _need_host(host, what):
    if not host:
        raise _usage(f"{what} needs --host HOST")


LIMIT_HELP = ("host pattern: names, groups, globs, a:b (union), a:&b (intersection), "
              "a:!b (exclusion)")
FORKS_HELP = f"hosts worked on at once (default {fleet.DEFAULT_FORKS})"


def _targets(ctl, host, limit, what):
    if host and limit:
        raise _usage(f"{what}: give --host or --limit, not both")
    if host:
        return [ctl.inventory.host(host)]
    if limit:
        return limit_mod.select(ctl.inventory, limit)
    raise _usage(f"{what} needs --host HOST or --limit PATTERN")


def _finish(outcomes, json, lines=()):
    """Print the run's result (JSON, or lines and a recap) and exit with its status."""
    if json:
        _print_json(outcomes.to_json())
    else:
        for line in lines:
            print(line)
        if len(outcomes) > 1:
            print(outcomes.recap())
    for o in outcomes.values():
        for m in o.messages:
            print(f"fruixops: {m}", file=sys.stderr)
    if outcomes.exit_status():
        raise Exit(code=outcomes.exit_status())


@user_task(help={"host": "host to deploy to", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "base": "base (default: each host's)",
                 "reboot": "reboot into the new closure and check what booted",
                 "trial": "boot the new generation once; make it current only if it boots "
                          "and its checks pass, else come back to the previous one",
                 "key": "signing key (default: the inventory's)", "inventory": INVENTORY_HELP,
                 "json": "print a machine-readable result per host",
                 "check": "change nothing: show what the deploy would do (as inv plan)"})
def deploy(c, host=None, limit=None, base=None, reboot=False, trial=False, key=None,
           inventory=None, forks=fleet.DEFAULT_FORKS, json=False, check=False):
    """Build, push only the missing items, switch the hosts' boot generation."""
    ctl = Controller(inventory, key=key)
    hosts = _targets(ctl, host, limit, "deploy")
    if check:
        return _plan(ctl, hosts, base, forks, json)
    with _display(hosts, json) as display:
        outcomes, lines = fleet.deploy_many(ctl, hosts, base, reboot=reboot, trial=trial,
                                            forks=forks, events=display)
    _finish(outcomes, json, lines)


def _display(hosts, json):
    from .display import FleetDisplay
    from .events import ConsoleEvents
    if len(hosts) == 1 and not json:
        return _Nullcontext(ConsoleEvents())
    return FleetDisplay([h.name for h in hosts])


class _Nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


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
    from . import playbook as playbook_mod
    from . import rollout
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


@user_task(help={"host": "host to check", "limit": LIMIT_HELP, "forks": FORKS_HELP,
                 "inventory": INVENTORY_HELP, "json": "print a machine-readable result"})
def verify(c, host=None, limit=None, inventory=None, forks=fleet.DEFAULT_FORKS, json=False):
    """Re-hash every store item on the hosts against what it recorded; report drift."""
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "verify")
    outcomes, lines = fleet.verify_many(ctl, hosts, forks=forks)
    _finish(outcomes, json, lines)


@user_task(name="accept", help={"host": "host whose SSH host key to accept",
                                "fingerprint": "accept only this key (SHA256:...), checked "
                                               "out of band",
                                "inventory": INVENTORY_HELP})
def hostkey_accept(c, host=None, fingerprint=None, inventory=None):
    """Record a host's new SSH host key in the inventory's known_hosts, explicitly."""
    from pathlib import Path
    from . import connection
    _need_host(host, "hostkey.accept")
    ctl = Controller(inventory)
    h = ctl.inventory.host(host)
    entry, key = connection.presented_host_key(h)
    fp = connection.fingerprint(key)
    print(f"{host}: {entry} presents {key.get_name()} {fp}")
    if fingerprint:
        if fingerprint != fp:
            raise _usage(f"{host}: presented key {fp} is not the expected {fingerprint}; "
                         "not recorded")
    elif sys.stdin.isatty():
        if input("accept this key? [y/N] ").strip().lower() not in ("y", "yes"):
            raise _usage("not accepted")
    else:
        raise _usage("give --fingerprint SHA256:... (checked out of band) to accept a host "
                     "key without a terminal")
    target = ctl.inventory.settings.known_hosts or Path("~/.ssh/known_hosts")
    connection.record_host_key(target, entry, key)
    print(f"{host}: recorded in {target}")


def _plan(ctl, hosts, base, forks, json):
    from . import lifecycle
    outcomes, changes = fleet.plan_many(ctl, hosts, base, forks=forks)
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
                 "inventory": INVENTORY_HELP, "json": "print JSON"})
def plan(c, host=None, limit=None, base=None, key=None, inventory=None,
         forks=fleet.DEFAULT_FORKS, json=False):
    """What a deploy would do, changing nothing: closures, base and label old -> new,
    items added and removed with sizes, bytes to send, whether a reboot is needed."""
    ctl = Controller(inventory, key=key)
    _plan(ctl, _targets(ctl, host, limit, "plan"), base, forks, json)


@user_task(name="diff", help={"host": "host", "from_": "generation (default: rollback)",
                              "to": "generation (default: current)",
                              "inventory": INVENTORY_HELP, "json": "print JSON"})
def diff_generations(c, host=None, from_=None, to=None, inventory=None, json=False):
    """Compare two generations on a host: closures, base, label, items and sizes."""
    from . import lifecycle
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
                 "keep": "generations to keep, newest first (current, rollback, next-boot, "
                         "booted and pinned ones are always kept)",
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


@user_task(name="gc", help={"keep": "also keep the N most recently built other items",
                            "dry_run": "list what would go", "inventory": INVENTORY_HELP})
def store_gc(c, keep=0, dry_run=False, inventory=None):
    """Collect the controller's local store: keep what the inventories' current
    declarations build (and the --keep N most recent others)."""
    from . import lifecycle
    if not str(keep).isdigit():
        raise _usage("store.gc --keep takes a number")
    ctl = Controller(inventory)
    deleted, freed, notes = lifecycle.store_gc(ctl, int(keep), dry_run=dry_run)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for p, b in deleted:
        print(f"{'would delete' if dry_run else 'deleted'} {p} {b}")
    print(f"{'would free' if dry_run else 'freed'} {freed} bytes ({freed / 2**20:.1f} MiB) "
          f"in {ctl.store_root}")


@user_task(help={"host": "host to reboot", "inventory": INVENTORY_HELP})
def reboot(c, host=None, inventory=None):
    """Reboot a host, wait for it, and report what it booted."""
    from . import deploy as deploy_mod
    _need_host(host, "reboot")
    state = deploy_mod.reboot_host(Controller(inventory), host)
    print(f"{host}: booted {state.booted or 'bare (no generation)'}")


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
        lines.append(f"host:     {h.name}")
        lines.append(f"booted:   {doc['booted'] or '-'}")
        for key in ("current", "rollback", "next_boot"):
            g = doc[key]
            lines.append(f"{key + ':':9} " + (f"generation {g['generation']}: {g['base']} "
                                              f"({g['version_label']}) {g['closure']}"
                                              if g else "-"))
    _finish(outcomes, False, lines)


@user_task(help={"host": "host to ask", "inventory": INVENTORY_HELP, "json": "print JSON"})
def generations(c, host=None, inventory=None, json=False):
    """Every generation on a host, with current / rollback / booted / next-boot marks."""
    import time as timemod
    from . import deploy as deploy_mod
    _need_host(host, "generations")
    state = deploy_mod.status(Controller(inventory), host)
    rows = []
    for n in sorted(state.generations):
        g = state.generations[n]
        marks = [m for m, on in (("current", n == state.current),
                                 ("rollback", n == state.rollback),
                                 ("next-boot", n == state.next_boot),
                                 ("booted", g.closure == state.booted
                                  and n == _booted_generation(state))) if on]
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


def _booted_generation(state):
    """The generation the host booted: the current one if its closure is the
    booted one, else the newest with that closure."""
    cur = state.gen(state.current)
    if cur and cur.closure == state.booted:
        return cur.number
    same = [n for n, g in state.generations.items() if g.closure == state.booted]
    return max(same) if same else None


@user_task(help={"host": "host to bootstrap", "inventory": INVENTORY_HELP})
def bootstrap(c, host=None, inventory=None):
    """Install the receiver on a host and, on first contact, its trusted keys."""
    from . import bootstrap as bootstrap_mod
    from .deploy import connect
    _need_host(host, "bootstrap")
    ctl = Controller(inventory)
    hc = connect(ctl, ctl.inventory.host(host))
    try:
        out = bootstrap_mod.bootstrap(hc, ctl.trusted_keys())
    finally:
        hc.close()
    for line in out.splitlines():
        print(f"{host}: {line}")
    print(f"{host}: receiver {receiver_version()[:16]} installed")


def receiver_version():
    from . import receiver
    return receiver.version()


@user_task(name="add", help={"host": "host", "key": "public key file (NAME.pub)",
                             "inventory": INVENTORY_HELP})
def trust_add(c, host=None, key=None, inventory=None):
    """Make a host trust one more signing key (key rotation: add, deploy, remove)."""
    from pathlib import Path
    from . import bootstrap as bootstrap_mod
    from .deploy import connect
    _need_host(host, "trust.add")
    if not key:
        raise _usage("trust.add needs --key NAME.pub")
    keys.load_public(key)
    ctl = Controller(inventory)
    hc = connect(ctl, ctl.inventory.host(host))
    try:
        print(f"{host}: " + bootstrap_mod.trust_add(hc, keys.key_name(key),
                                                     Path(key).read_bytes()).strip())
    finally:
        hc.close()


@user_task(name="remove", help={"host": "host", "name": "key name", "inventory": INVENTORY_HELP})
def trust_remove(c, host=None, name=None, inventory=None):
    """Make a host stop trusting a signing key (never its last one)."""
    from . import bootstrap as bootstrap_mod
    from .deploy import connect
    _need_host(host, "trust.remove")
    if not name:
        raise _usage("trust.remove needs --name NAME")
    ctl = Controller(inventory)
    hc = connect(ctl, ctl.inventory.host(host))
    try:
        print(f"{host}: " + bootstrap_mod.trust_remove(hc, name).strip())
    finally:
        hc.close()


def _generation_number(text):
    if text in (None, ""):
        return None
    if not str(text).isdigit():
        raise _usage(f"--to takes a generation number, not {text!r}")
    return int(text)


def _lab(inventory, host=None):
    from . import lab as lab_mod
    inv = Controller(inventory).inventory
    hosts = [inv.host(host)] if host else list(inv.hosts.values())
    return lab_mod.Lab(inv), hosts


@user_task(name="up", help={"inventory": INVENTORY_HELP, "host": "only this host",
                            "bare": "leave new hosts bare instead of installing their base"})
def lab_up(c, inventory=None, host=None, bare=False):
    """Start the lab: one sshd per host in its own namespaces (needs root).

    A new (bare) host is installed with its inventory base as generation 1,
    like a machine delivered with Fruix on it, unless --bare is given."""
    lab, hosts = _lab(inventory, host)
    lab.up(hosts)
    installed = {} if bare else {r["host"]: r for r in lab.install(Controller(inventory), hosts)}
    for h in hosts:
        how = (f", installed {installed[h.name]['base']} as generation "
               f"{installed[h.name]['generation']}" if h.name in installed else "")
        print(f"{h.name}: up on {h.var('ssh_host')}:{h.var('ssh_port')} "
              f"(disk {lab.disk(h.name)}{how})")


@user_task(name="down", help={"inventory": INVENTORY_HELP, "host": "only this host"})
def lab_down(c, inventory=None, host=None):
    """Stop the lab's hosts (their disks are kept)."""
    lab, hosts = _lab(inventory, host)
    lab.down(hosts)
    print(f"lab down ({len(hosts)} hosts)")


@user_task(name="reset", help={"inventory": INVENTORY_HELP, "host": "only this host"})
def lab_reset(c, inventory=None, host=None):
    """Stop the lab's hosts and wipe their disks."""
    lab, hosts = _lab(inventory, host)
    lab.reset(hosts)
    print(f"lab reset ({len(hosts)} hosts; start again with inv lab.up)")


@user_task(name="power-cycle", help={"inventory": INVENTORY_HELP, "host": "host to cycle"})
def lab_power_cycle(c, inventory=None, host=None):
    """Cut a lab host's power and switch it on again (no clean shutdown)."""
    _need_host(host, "lab.power-cycle")
    lab, hosts = _lab(inventory, host)
    lab.power_cycle(host)
    print(f"{host}: power-cycled")


@user_task(help={"inventory": INVENTORY_HELP, "host": "lab host to run it on"})
def demo(c, inventory=None, host="web1"):
    """The Fruix phase 15.2 story on a lab host: deploy, boot, roll forward, roll back."""
    from . import story
    ok = story.run(Controller(inventory), host, out=print)
    if not ok:
        raise Exit(code=EXIT_FAILED)


def _usage(message):
    from .errors import UserError
    return UserError(message)


def _print_json(obj):
    print(jsonlib.dumps(obj, indent=2, sort_keys=True))


keys_ns = Collection("keys")
keys_ns.add_task(keys_generate, name="generate")

trust_ns = Collection("trust")
trust_ns.add_task(trust_add, name="add")
trust_ns.add_task(trust_remove, name="remove")

store_ns = Collection("store")
store_ns.add_task(store_gc, name="gc")

hostkey_ns = Collection("hostkey")
hostkey_ns.add_task(hostkey_accept, name="accept")

lab_ns = Collection("lab")
for t, n in ((lab_up, "up"), (lab_down, "down"), (lab_reset, "reset"),
             (lab_power_cycle, "power-cycle")):
    lab_ns.add_task(t, name=n)

ns = Collection()
for t in (build, manifest, deploy, rollback, reboot, status, generations, bootstrap, demo,
          play, verify, plan, gc):
    ns.add_task(t)
ns.add_task(diff_generations, name="diff")
for sub in (keys_ns, trust_ns, hostkey_ns, store_ns, lab_ns):
    ns.add_collection(sub)


def main():
    Program(namespace=ns, version=__version__, name="fruixops", binary="fruixops").run()


__all__ = ["ns", "main", "EXIT_FAILED"]
