"""The generation lifecycle: what a deploy would change (plan), what changed
between two generations (diff), and garbage collection on hosts and in the
controller's local store."""

import re
import shlex
from dataclasses import dataclass, field

from fruixops.rollout import bootloader
from fruixops.remote import hostreply, hoststate
from fruixops.rollout import push
from fruixops.remote import receiver
from fruixops.rollout.bootstrap import install_receiver_if_missing
from fruixops.rollout.deploy import compress_choice, connect, pull_source
from fruixops.errors import HostError, UserError
from fruixops.store.manifest import ManifestError, parse
from fruixops.store.local import StorePath


@dataclass
class Change:
    """What goes from one closure to another: items added (with the bytes to
    send for them) and removed, base and version label before and after."""
    host: str
    old_closure: str | None
    new_closure: str | None
    old_base: str | None = None
    old_label: str | None = None
    new_base: str | None = None
    new_label: str | None = None
    added: list = field(default_factory=list)       # (path, size)
    removed: list = field(default_factory=list)     # (path, size)
    send: list = field(default_factory=list)        # paths the host lacks
    bytes_to_send: int = 0       # what crosses the wire, dedupe included
    pull: list = field(default_factory=list)        # paths the host would pull from the cache
    bytes_to_fetch: int = 0      # what it would fetch from the cache
    deltas: list = field(default_factory=list)      # items sent as deltas (host has some files)
    reused_files: int = 0        # files the host would link from its own store
    reused_bytes: int = 0        # and their bytes, not sent
    reboot_needed: bool = False
    compressed: bool = False     # the deploy would send the items zstd-compressed
    old_generation: int | None = None
    new_generation: int | None = None
    notes: list = field(default_factory=list)   # bootloader differs, loader overrides
    old_corrupt: bool = False    # the current generation's record is cut or empty
    config: object = None        # config.diff.ConfigChange: files, rc.conf, accounts, services
    reboot_why: str | None = None    # why the switch cannot be live (kernel, base, tunables)

    @property
    def unchanged(self):
        return self.old_closure == self.new_closure and not self.send and not self.old_corrupt

    def to_json(self):
        d = dict(self.__dict__)
        d["added"] = [{"path": p, "size": s} for p, s in self.added]
        d["removed"] = [{"path": p, "size": s} for p, s in self.removed]
        d["unchanged"] = self.unchanged
        d["config"] = self.config.to_json() if self.config is not None else None
        return d


def _manifest_lines(text, prefix):
    lines = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    return ("\n".join(lines) + "\n").encode() if lines else None


def _items_of(manifest_bytes):
    try:
        m = parse(manifest_bytes)
    except ManifestError:
        return None, {}
    return m, {str(it.path): it.size for it in m.items}


def plan(ctl, host_name, base_name=None, compress=None, use_cache=True):
    """What `deploy` (with the same *compress* and *use_cache* choices) would
    do to a host, changing nothing anywhere."""
    host = ctl.inventory.host(host_name)
    m, data, sig = ctl.make_manifest(host_name, base_name)
    paths = "".join(f"{it.path}\n" for it in m.items).encode()
    script = (
        'while read -r p; do [ -d "$p" ] || echo "missing $p"; done; '
        f'{receiver.status_command(bootloader.esp_path(host))}; '
        'if command -v zstd >/dev/null 2>&1; then echo "zstd yes"; fi; '
        'for t in fetch curl wget; do command -v $t >/dev/null 2>&1 && '
        '{ echo "fetch $t"; break; }; done; '
        'm=/var/lib/fruix/system/current/manifest; '
        '[ -f $m ] && sed "s/^/current-manifest /" $m; exit 0')
    hc = connect(ctl, host)
    try:
        if hc.access.restricted:
            with hc.reading():
                state, current = _restricted_plan(ctl, hc, data, sig)
        else:
            r = hc.query(f"sh -c {shlex.quote(script)}", stdin=paths)
            if r.status != 0:
                raise HostError(host.name, r.last_error_line())
            state = hoststate.parse(r.out, host.name, "plan", extra=("current-manifest",))
            current = _manifest_lines(r.out, "current-manifest ")
        # Which files of the missing items the host already holds (it links
        # them instead of receiving them).
        sends = (push.ask_need(hc, data, sig, push.missing_items(host.name, m, state.missing),
                               ctl.builder.store) if state.missing else None)
        old, old_items = _items_of(current or b"")
        config = _config_change(ctl, hc, state, old, m)
    finally:
        hc.close()
    new_items = {str(it.path): it.size for it in m.items}
    change = Change(host.name, str(old.system) if old else None, str(m.system),
                    old.base if old else None, old.version_label if old else None,
                    m.base, m.version_label, old_generation=state.current)
    change.added = [(p, s) for p, s in new_items.items() if p not in old_items]
    change.removed = [(p, s) for p, s in old_items.items() if p not in new_items]
    change.compressed = compress_choice(host, compress) != "none" and state.zstd
    if not (change.old_closure == change.new_closure and not state.missing):
        change.send = list(state.missing)
        pull, note = pull_source(ctl, host, state.fetcher) if use_cache else (None, None)
        if note:
            change.notes.append(note)
        pulled, listings = (_plan_pulls(change, pull, m, state, sends, ctl.builder.store)
                            if pull else ((), False))
        change.bytes_to_send = push.bundle_bytes(m, data, sig, state.missing, ctl.builder.store,
                                                 change.compressed, host.name, sends,
                                                 pull=bool(pull), pulled=pulled,
                                                 listings_pulled=listings)
        deltas = [d for d in (sends or {}).values() if d.need is not None]
        change.deltas = [str(d.item.path) for d in deltas]
        change.reused_files = sum(d.reused_files for d in deltas)
        change.reused_bytes = sum(d.reused_bytes for d in deltas)
    change.config = config
    change.reboot_why = reboot_reason(ctl.builder.store, state.booted, m.system)
    change.reboot_needed = change.reboot_why is not None
    if state.current in state.corrupt:
        change.old_corrupt = True
        change.notes.append(f"generation {state.current}'s record is corrupt (cut or empty): "
                            "a deploy records the closure again")
    note = bootloader.difference(state, ctl.builder.store, m)
    if note:
        change.notes.append(note)
    change.notes += state.warnings()
    return change


def _config_change(ctl, hc, state, old, m):
    """The configuration change from the host's current generation to the
    new system, and the managed files edited by hand on the host."""
    from fruixops.system.config import diff as cdiff
    store = ctl.builder.store
    new = cdiff.from_store(store, m.system)
    before = None
    if old is not None:
        before = cdiff.from_store(store, old.system)
        if before is None and state.current is not None:
            before = cdiff.from_host(hc, state.current)
    ch = cdiff.compare(before, new)
    ch.edited = cdiff.drift(hc) or []
    ch.before_unknown = old is not None and before is None
    return ch


def reboot_reason(store, booted, system):
    """Why *system* cannot replace the *booted* one without a reboot (None:
    a live switch can): nothing booted from fruixops, another kernel,
    bootloader or base, other loader tunables. Read from the controller's
    store; a booted system it does not have is a reboot."""
    from fruixops.system.config import diff as cdiff
    if booted == str(system):
        return None
    if not booted:
        return "the host runs no Fruix system"
    try:
        a, b = store.get(StorePath(booted)), store.get(StorePath(str(system)))
    except ValueError:
        a = b = None
    if a is None or b is None:
        return "the running system is not in this controller's store"
    for ref_a, ref_b in zip(a.references, b.references):
        if ref_a != ref_b:
            return f"its {StorePath(str(ref_b)).name.split('-')[2]} differs"
    ca, cb = cdiff.from_store(store, a.path), cdiff.from_store(store, b.path)
    if ca.loader_tunables != cb.loader_tunables:
        return "its loader tunables differ"
    return None


def _plan_pulls(change, pull, m, state, sends, store):
    """What the host would pull, as a deploy would: whole items the cache
    has (asked with HEAD from here; an object it does not answer for is
    counted as there), the listings it is asked about when the cache has
    them all, and deltas when the cache can be uploaded to. Fills in
    change.pull and bytes_to_fetch; returns (paths pulled, listings pulled)."""
    from fruixops.rollout import cache
    items = push.missing_items(change.host, m, state.missing)
    resolved = push.resolve(dict(push.whole(items), **(sends or {})), store, change.compressed)
    whole = [s.item for s in resolved.values() if s.need is None]
    objs = cache.pulled_objects(whole, store, change.compressed, push.SEND_LISTING_FROM)
    first = push.listed(items, True) if sends is not None else []
    listing_objs = {}                          # {object name: bytes}
    for it in first:
        name, _, size = cache.objects(store, it)["listing"]
        listing_objs[name] = size
    there = cache.present(pull.url, [n for o in objs.values() for n in (o[0], o[2]) if n]
                          + list(listing_objs))
    absent = [p for p, o in objs.items() if there[o[0]] is False]
    if absent:
        change.notes.append(f"{len(absent)} of {len(objs)} whole items are not in the cache "
                            f"{pull.url}: they would be pushed (inv cache.push)")
    asked = {str(it.path) for it in first}     # their listings come first, once
    for path, (name, size, lname, lsize) in objs.items():
        if path not in absent:
            change.pull.append(path)
            change.bytes_to_fetch += size + (lsize if lname and path not in asked
                                             and there[lname] is not False else 0)
    listings = bool(first) and all(there[n] is not False for n in listing_objs)
    if listings:
        change.bytes_to_fetch += sum(listing_objs.values())
    if pull.uploader:
        for path, s in resolved.items():
            if s.need is not None:
                change.pull.append(path)
                change.bytes_to_fetch += s.size
    return set(change.pull), listings


def _restricted_plan(ctl, hc, data, sig):
    """Plan through a restricted access: the receiver's own plan (which
    verifies the manifest) and the current generation's manifest."""
    state = push.plan(hc, data, sig, ctl.trusted_keys())
    r = hc.run(hc.receiver("manifest", "current"))
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    return state, r.stdout


def diff(ctl, host_name, from_gen=None, to_gen=None):
    """The change between two generations on a host (default: rollback -> current)."""
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    try:
        install_receiver_if_missing(hc)
        with hc.reading():
            state = hoststate.parse(hc.check(hc.receiver("status")).out, host.name)
        a = from_gen if from_gen is not None else state.rollback
        b = to_gen if to_gen is not None else state.current
        if a is None or b is None:
            raise UserError(f"{host.name}: no generation to compare (give --from and --to)")
        for n in (a, b):
            if n not in state.generations:
                raise UserError(f"{host.name}: no generation {n}")
        with hc.reading():
            text_a = hc.check(hc.receiver("manifest", a)).stdout
            text_b = hc.check(hc.receiver("manifest", b)).stdout
    finally:
        hc.close()
    ma, ia = _items_of(text_a)
    mb, ib = _items_of(text_b)
    change = Change(host.name, str(ma.system) if ma else None, str(mb.system) if mb else None,
                    ma.base if ma else None, ma.version_label if ma else None,
                    mb.base if mb else None, mb.version_label if mb else None,
                    old_generation=a, new_generation=b)
    change.added = [(p, s) for p, s in ib.items() if p not in ia]
    change.removed = [(p, s) for p, s in ia.items() if p not in ib]
    change.reboot_why = reboot_reason(ctl.builder.store, state.booted, change.new_closure)
    change.reboot_needed = change.reboot_why is not None
    from fruixops.system.config import diff as cdiff
    hc = connect(ctl, host)
    try:
        with hc.reading():
            before, after = cdiff.from_host(hc, a), cdiff.from_host(hc, b)
        change.config = cdiff.compare(before, after) if after is not None else None
    finally:
        hc.close()
    return change


def format_change(c, title=None):
    """A human table of a Change."""
    def mib(n):
        return f"{n / 2**20:8.2f} MiB"
    lines = [title or (f"{c.host}: {c.old_base or '-'} ({c.old_label or '-'}) -> "
                       f"{c.new_base} ({c.new_label})")]
    lines.append(f"  from  {c.old_closure or '(nothing)'}")
    lines.append(f"  to    {c.new_closure}")
    send = set(c.send)
    for p, s in sorted(c.added, key=lambda x: StorePath(x[0]).name):
        lines.append(f"  + {StorePath(p).name:48} {mib(s)}" + (
            ("  (to send: the files the host lacks)" if p in c.deltas
             else "  (to pull from the cache)" if p in c.pull else "  (to send)")
            if p in send else ""))
    for p, s in sorted(c.removed, key=lambda x: StorePath(x[0]).name):
        lines.append(f"  - {StorePath(p).name:48} {mib(s)}")
    if c.unchanged:
        lines.append("  no change: the closure is already current")
    if c.config is not None:
        from fruixops.system.config import diff as cdiff
        lines += cdiff.format_change(c.config)
    lines += [f"  {note}" for note in c.notes]
    lines.append(f"  items added {len(c.added)} ({sum(s for _, s in c.added)} bytes), removed "
                 f"{len(c.removed)} ({sum(s for _, s in c.removed)} bytes); to send "
                 f"{len(c.send)} items, {c.bytes_to_send} bytes"
                 + (" (zstd)" if c.compressed and c.send else "")
                 + (f", {len(c.pull)} of them pulled from the cache ({c.bytes_to_fetch} bytes)"
                    if c.pull else "")
                 + (f", {c.reused_files} files ({c.reused_bytes} bytes) reused from the "
                    "host's store" if c.deltas else "") + "; reboot needed: "
                 + (f"yes ({c.reboot_why})" if c.reboot_needed and c.reboot_why else
                    "yes" if c.reboot_needed else "no"))
    return "\n".join(lines)


@dataclass
class GcReport:
    host: str
    deleted_generations: list = field(default_factory=list)
    kept: dict = field(default_factory=dict)        # generation -> why
    deleted_items: list = field(default_factory=list)   # (path, bytes)
    freed: int = 0
    dry_run: bool = False

    def to_json(self):
        return {"host": self.host, "deleted_generations": self.deleted_generations,
                "kept": self.kept, "freed": self.freed, "dry_run": self.dry_run,
                "deleted_items": [{"path": p, "bytes": b} for p, b in self.deleted_items]}


def gc(ctl, host_name, keep, dry_run=False):
    """Delete old generations and unreachable items on a host (under its lock)."""
    host = ctl.inventory.host(host_name)
    pins = host.var("pinned_generations", [])
    args = ["gc", keep] + (["--dry-run"] if dry_run else [])
    for n in pins:
        args += ["--pin", n]
    hc = connect(ctl, host)
    try:
        install_receiver_if_missing(hc)
        out = hc.check(hc.receiver(*args)).out
    finally:
        hc.close()
    return _gc_report(host.name, out, dry_run)


_KEEP_REASON = re.compile(r"^[a-z][a-z-]{0,31}$")    # booted, default, current, pinned...


def _gc_report(host, out, dry_run):
    """The receiver's gc lines, parsed strictly."""
    report = GcReport(host, dry_run=dry_run)
    freed = None
    for line in out.splitlines():
        f = line.split(" ")
        n = lambda i: hostreply.number(host, "gc", f[i], line)  # noqa: E731
        if f[0] == "delete-generation" and len(f) == 2:
            report.deleted_generations.append(n(1))
        elif f[0] == "keep-generation" and len(f) == 3 and _KEEP_REASON.match(f[2]):
            report.kept[n(1)] = f[2]
        elif f[0] == "delete-item" and len(f) == 3:
            report.deleted_items.append((hostreply.store_path(host, "gc", f[1], line), n(2)))
        elif f[0] == "freed" and freed is None and f[2:] in ([], ["(dry", "run)"]):
            freed = report.freed = n(1)
        else:
            raise hostreply.MalformedReply(host, "gc", line)
    if freed is None:
        raise hostreply.MalformedReply(host, "gc", "no 'freed' line")
    return report


def store_gc(ctl, keep=0, dry_run=False):
    """Collect the controller's local store: keep every item that any
    inventory's current declarations build (every base, and every host's
    system on every base of its inventory) plus the *keep* most recently built
    other items; delete the rest. Returns (deleted [(path, bytes)], freed,
    notes)."""
    from pathlib import Path

    from fruixops.inventory import model as inventory_mod
    from fruixops.system.build import Builder
    store = ctl.builder.store
    root = store.root.resolve()
    live, notes = set(), []
    for inv_path in sorted(Path(ctl.inventory.path).parent.glob("*.yaml")):
        try:
            inv = inventory_mod.load(inv_path)
        except UserError as exc:
            notes.append(f"skipped {inv_path}: {exc}")
            continue
        if (inv.settings.store or Path(".frx")).resolve() != root:
            continue
        builder = Builder(root, inventory=inv)
        for base in inv.bases.values():
            try:
                paths = builder.base_paths(base)
            except UserError as exc:
                notes.append(f"skipped base {base.name} of {inv_path.name}: {exc}")
                continue
            live.update(paths.values())
            for host in inv.hosts.values():
                try:
                    live.add(builder.system_path(host, base, paths)[0])
                except UserError as exc:
                    notes.append(f"skipped host {host.name} of {inv_path.name}: {exc}")
    others = sorted((p for p in store.paths() if p not in live),
                    key=store.last_used, reverse=True)
    deleted, freed = [], 0
    for p in others[keep:]:
        size = store.footprint(p)
        deleted.append((str(p), size))
        freed += size if dry_run else store.delete(p)
    return deleted, freed, notes
