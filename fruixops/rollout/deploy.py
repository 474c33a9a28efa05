"""Deploy: build, sign, push, switch, and optionally reboot into the new
closure and check what booted — for one host. Fleet runs call these once per
host, in parallel.

A trial deploy records the new generation as the host's one-shot next boot
(FreeBSD's ``nextboot.conf``) while the loader's default stays; the host
reboots into it; if the checks pass it becomes the default, and if they fail
(or the host does not come back) the host is rebooted (or power-cycled) and
its loader, having consumed the one-shot, boots the default again.
"""

import shlex
import subprocess
import sys
from dataclasses import dataclass, field

from fruixops.rollout import boot, bootloader
from fruixops.rollout import checks as checks_mod
from fruixops.rollout import push, switch
from fruixops.system.secrets import deliver as secret_delivery
from fruixops.system.secrets import sources as secret_sources
from fruixops.remote.connection import connect
from fruixops.errors import HostError, HostUnreachable, UserError
from fruixops.rollout.events import ConsoleEvents


@dataclass
class DeployResult:
    host: str
    closure: str
    base: str
    version_label: str
    generation: int | None = None
    previous_generation: int | None = None
    previous_closure: str | None = None
    changed: bool = False
    items_sent: int = 0
    sent: list = field(default_factory=list)        # store paths sent
    bytes_sent: int = 0                   # controller -> host, over SSH
    bytes_fetched: int = 0                # cache -> host (items the host pulled)
    pulled: int = 0                       # items the host pulled from the cache
    cache_uploaded: int = 0               # delta bytes this deploy put in the cache
    deltas: int = 0                       # items sent as deltas (the host had some files)
    reused_files: int = 0                 # files the host linked from its own store
    reused_bytes: int = 0                 # their bytes, not sent
    booted: str | None = None             # after a reboot: kenv fruix.system
    booted_generation: int | None = None  # after a reboot: kenv fruix.generation
    booted_kernel: str | None = None      # after a reboot: kenv kernelname
    rolled_back: bool = False
    compressed: bool = False
    checks: dict = field(default_factory=dict)     # name -> "ok" or why it failed
    notes: list = field(default_factory=list)
    activation: dict | None = None        # the live switch (config.live.Activation)
    secrets: list = field(default_factory=list)    # "NAME VERSION" delivered (never values)

    def to_json(self):
        return dict(self.__dict__)


class DeployFailed(HostError):
    """A deploy that went wrong after it started; .result says how far it got."""

    def __init__(self, host, message, result):
        super().__init__(host, message)
        self.result = result


def prepare(ctl, host_name, base_name=None, checks=()):
    """Build the host's closure and sign its manifest, with the *checks* the
    host may run for it (controller only)."""
    return ctl.make_manifest(host_name, base_name, checks=checks)


COMPRESS_CHOICES = ("auto", "zstd", "none")


def deploy(ctl, host_name, base_name=None, reboot=False, trial=False, checks=(),
           events=None, prepared=None, compress=None, install_bootloader=False,
           use_cache=True):
    """Deploy to one host; return a DeployResult or raise (DeployFailed carries
    the partial result; HostUnreachable when the host cannot be reached).
    With a cache in the inventory (and *use_cache*), the host pulls whole
    items from it; the controller sends the manifest, control and deltas."""
    events = events or ConsoleEvents()
    host = ctl.inventory.host(host_name)
    checks = checks_mod.with_services(checks, host)
    events.phase(host.name, "build")
    m, data, sig = prepared or prepare(ctl, host_name, base_name, checks)
    result = DeployResult(host.name, str(m.system), m.base, m.version_label)
    # Secrets are read before the host is touched: a source that fails
    # fails this host's deploy with one line, nothing sent.
    try:
        resolved = secret_delivery.resolve(host)
    except UserError as exc:
        events.phase(host.name, "failed")
        raise DeployFailed(host.name, str(exc), result) from None
    events.phase(host.name, "plan")
    try:
        hc = connect(ctl, host)
    except BaseException:
        secret_sources.wipe(resolved)
        raise
    try:
        with hc.reading():          # plan's state read (a receiver install keeps its own limit)
            state = push.plan(hc, data, sig, ctl.trusted_keys())
        result.compressed = _use_zstd(host, compress, state)
        # What the loader boots by default is what the host has.
        previous = state.default if state.default is not None else state.current
        result.previous_generation = previous
        result.previous_closure = state.gen(previous).closure if state.gen(previous) else None
        loader_note = bootloader.difference(state, ctl.builder.store, m)
        if loader_note and not install_bootloader:
            result.notes.append(loader_note)
        result.notes += [w for w in state.warnings() if "loaded kernel" not in w]
        if state.boot_fs_warning() and host.var("boot_fs_check", True):
            # Its next boot would stop at the loader prompt: refused before
            # anything is sent (a host whose loader does read the store, a
            # ZFS child dataset say, sets boot_fs_check: false).
            raise DeployFailed(host.name, f"{state.boot_fs_warning()}; refused (boot_fs_check: "
                               "false if this host's loader reads it)", result)
        if (result.previous_closure == str(m.system) and state.current == previous
                and previous not in state.corrupt and not state.missing and not trial):
            result.generation = state.current
            result.notes.append("closure already current; nothing sent")
        else:
            events.phase(host.name, "push")
            before = hc.bytes_sent
            answer = {}
            result.generation, _ = push.push(hc, m, data, sig, state.missing, ctl.builder.store,
                                             switch.deployer_identity(), trial=trial, events=events,
                                             compress=result.compressed, report=answer,
                                             reuse=state.reuse,
                                             pull=(_pull(ctl, host, state, result)
                                                   if use_cache else None))
            result.pulled = len(answer["pulled"])
            result.bytes_fetched = sum(answer["pulled"].values()) + answer["listings_fetched"]
            result.cache_uploaded = answer["uploaded"]
            for path, why in answer["pull_refused"].items():
                result.notes.append(f"{path.rsplit('/', 1)[-1]}: pushed instead of pulled "
                                    f"from the cache ({why})")
            for path, why in answer["delta_refused"].items():
                result.notes.append(f"{path.rsplit('/', 1)[-1]}: sent whole, its delta refused "
                                    f"({why})")
            deltas = [d for d in answer.get("sends", {}).values() if d.need is not None]
            result.deltas = len(deltas)
            result.reused_files = sum(d.reused_files for d in deltas)
            result.reused_bytes = sum(d.reused_bytes for d in deltas)
            if "one-shot" in answer:
                result.notes.append(f"generation {result.generation} set as the one-shot "
                                    f"next boot with {answer['one-shot']}")
            result.items_sent = len(state.missing)
            result.sent = list(state.missing)
            result.bytes_sent = hc.bytes_sent - before
            result.changed = True
        if resolved:
            # Sealed to the host's own key, over SSH, never through the cache.
            events.phase(host.name, "secrets")
            result.secrets = [ln.split(" ", 1)[1] for ln in
                              secret_delivery.deliver(ctl, hc, resolved)
                              if ln.startswith("kept ")]
        if trial:
            hc = _trial(ctl, hc, host, result, checks, events)
        if install_bootloader and loader_note:
            events.phase(host.name, "bootloader")
            installed = bootloader.install(hc, result.generation).split()[-1]
            result.notes.append(f"bootloader: installed {installed} (the previous one kept "
                                "as .old)")
        if not trial:
            if reboot:
                events.phase(host.name, "reboot")
                hc = boot.reboot(hc)
            else:
                _activate(hc, result, events)
            _run_checks(hc, result, checks, rebooted=reboot, events=events)
        events.phase(host.name, "done")
        return result
    except HostUnreachable:
        events.phase(host.name, "unreachable")
        raise
    except DeployFailed:
        events.phase(host.name, "failed")
        raise
    except HostError as exc:
        events.phase(host.name, "failed")
        raise DeployFailed(host.name, str(exc).split(": ", 1)[1], result) from None
    finally:
        secret_sources.wipe(resolved)
        hc.close()


def _activate(hc, result, events):
    """The live switch (fruixops.system.config.live). A configuration the host
    refuses (a validate command, an account conflict) changes nothing there;
    the previous generation is made the default again, so that the next boot
    does not bring it in either."""
    from fruixops.system.config import live
    events.phase(result.host, "activate")
    try:
        a = live.activate(hc, result.generation)
    except HostError as exc:
        why = str(exc).split(": ", 1)[1]
        if result.changed and result.previous_generation is not None:
            switch.rollback(hc, result.previous_generation)
            why += (f"; generation {result.previous_generation} is the default again "
                    f"(generation {result.generation} is kept, not booted)")
        raise DeployFailed(result.host, why, result) from None
    result.activation = a.to_json()
    result.notes += a.notes()
    if a.failed:
        raise DeployFailed(result.host, "after the live switch: failed "
                           + "; ".join(a.failed), result)


def _pull(ctl, host, state, result):
    pull, note = pull_source(ctl, host, state.fetcher)
    if note:
        result.notes.append(note)
    return pull


def pull_source(ctl, host, fetcher):
    """(push.Pull or None, a note or None): whether, and from where, the host
    pulls whole items -- when the inventory names a cache (or the host's
    cache_url does; "" turns it off) and the host has a tool to fetch with."""
    from fruixops.inventory import settings as settings_mod
    settings = ctl.inventory.settings.cache
    url = host.var("cache_url", settings.url if settings else None)
    if not url:
        return None, None
    try:
        url = settings_mod.check_url(str(url))
    except ValueError as exc:
        raise HostError(host.name, f"cache_url: {exc}") from None
    if not fetcher:
        return None, "the host has no fetch(1), curl or wget: items pushed, not pulled"
    settings = settings or settings_mod.CacheSettings(url=url, upload=None)
    return push.Pull(url, settings.parallel, ctl.cache_uploader(), grace=settings.grace,
                     min_rate=settings.min_rate), None


def compress_choice(host, compress=None):
    """The --compress option, else the host's `compress` variable (default auto)."""
    choice = compress or host.var("compress", "auto")
    if choice not in COMPRESS_CHOICES:
        raise HostError(host.name, f"compress must be one of {', '.join(COMPRESS_CHOICES)}")
    return choice


def _use_zstd(host, compress, state):
    """auto (the default): zstd whenever the host has it; zstd: required."""
    choice = compress_choice(host, compress)
    if choice == "zstd" and not state.zstd:
        raise HostError(host.name, "compress=zstd, but the host has no zstd")
    return choice != "none" and state.zstd


def _run_checks(hc, result, checks, rebooted, events):
    """Checks after the switch (after the reboot, if any). The booted-closure
    check always runs after a reboot."""
    todo = list(checks)
    if rebooted:
        todo.insert(0, checks_mod.booted_check())
        state = boot.state(hc)
        result.booted, result.booted_generation = state.booted, state.booted_generation
        result.booted_kernel = state.booted_kernel
        if state.kernel_mismatch():
            # Booted on another kernel (a kernel= read after fruix.conf): not
            # what this generation boots, so it is no pass (a trial goes back).
            result.checks["kernel"] = state.kernel_mismatch()
            raise DeployFailed(result.host, "check failed: kernel (" + state.kernel_mismatch()
                               + ")", result)
    if not todo:
        return
    events.phase(result.host, "checks")
    failed = []
    for r in checks_mod.run_all(hc, todo, result.generation):
        result.checks[r.name] = "ok" if r.ok else r.detail
        if not r.ok:
            failed.append(f"{r.name} ({r.detail})")
    if failed:
        raise DeployFailed(result.host, "check failed: " + "; ".join(failed), result)


def _trial(ctl, hc, host, result, checks, events):
    events.phase(host.name, "trial boot")
    since = boot.boottime(hc)
    try:
        hc = boot.reboot(hc, before=since)
    except HostUnreachable as exc:
        events.phase(host.name, "power-cycle")
        hc = power_cycle(ctl, host, why=str(exc), since=since)
        _came_back(hc, result)
        raise DeployFailed(host.name, f"trial of generation {result.generation} did not come "
                           f"back; power-cycled; back on generation "
                           f"{result.previous_generation} ({result.booted})", result) from None
    try:
        _run_checks(hc, result, checks, rebooted=True, events=events)
    except HostUnreachable:
        raise
    except HostError as failed:
        # The host answers (a failed check, or a malformed answer to one): a
        # plain reboot takes it back, the one-shot selection having been
        # consumed by the trial boot.
        events.phase(host.name, "reboot back")
        hc = boot.reboot(hc)
        _came_back(hc, result)
        raise DeployFailed(host.name, f"trial of generation {result.generation} failed "
                           f"({str(failed).split(': ', 1)[1]}); rebooted back to generation "
                           f"{result.previous_generation}", result) from None
    switch.confirm(hc, result.generation)
    result.notes.append(f"trial boot passed; generation {result.generation} is current")
    return hc


def _came_back(hc, result):
    state = boot.state(hc)
    result.booted, result.booted_generation = state.booted, state.booted_generation
    result.rolled_back = True
    if (state.booted_generation, state.booted) != (result.previous_generation,
                                                   result.previous_closure):
        raise DeployFailed(result.host, f"after the failed trial it booted generation "
                           f"{state.booted_generation} ({state.booted or 'nothing'}), not "
                           f"its default {result.previous_generation} "
                           f"({result.previous_closure})", result)


def power_cycle(ctl, host, why="", since=None):
    """Run the inventory's power_cycle_command on the controller, then wait for
    the host (to boot again: a boot time other than *since*). Placeholders:
    {host}, {inventory}, {python} (checked when the inventory loads; {{ and }}
    are literal braces)."""
    command = host.var("power_cycle_command")
    if not command:
        raise HostUnreachable(host.name, f"{why}; no power_cycle_command in the inventory: "
                              "power-cycle it by hand (it will boot its previous generation)")
    line = power_cycle_line(command, host.name, ctl.inventory.path)
    try:
        proc = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise HostUnreachable(host.name, f"{why}; power_cycle_command did not finish within "
                              "120s: power-cycle it by hand") from None
    if proc.returncode != 0:
        raise HostUnreachable(host.name, f"power_cycle_command failed: "
                              f"{(proc.stderr or proc.stdout).strip()[-200:]}")
    hc = boot.wait_for_boot(host, ctl.inventory.settings.known_hosts,
                            host.var("reboot_timeout", 300), since=since)
    hc.controller = ctl
    return hc


def power_cycle_line(command, host_name, inventory_path):
    """The shell line power_cycle_command stands for."""
    return command.format(host=shlex.quote(host_name), inventory=shlex.quote(str(inventory_path)),
                          python=shlex.quote(sys.executable))


def rollback(ctl, host_name, to=None, reboot=False, checks=False, events=None):
    """Make generation *to* (default: the rollback one) current; return
    (generation, HostState). With *checks* and *reboot*, once it booted, run
    the health checks signed in that generation's manifest (the ones it was
    deployed with: never the checks of the generation left)."""
    events = events or ConsoleEvents()
    host = ctl.inventory.host(host_name)
    events.phase(host.name, "rollback")
    hc = connect(ctl, host)
    try:
        generation = switch.rollback(hc, to)
        state = boot.state(hc)
        if not reboot:
            # Back live, as a deploy goes forward (fruixops.system.config.live).
            from fruixops.system.config import live
            state.activation_notes = live.activate(hc, generation).notes()
        if reboot:
            events.phase(host.name, "reboot")
            hc = boot.reboot(hc)
            state = boot.state(hc)
            if (state.booted_generation, state.booted) != (generation, state.current_closure):
                raise HostError(host.name, f"booted generation {state.booted_generation} "
                                           f"({state.booted or 'nothing'}), expected "
                                           f"{generation} ({state.current_closure})")
            if state.kernel_mismatch():
                raise HostError(host.name, state.kernel_mismatch())
        if checks and reboot:
            events.phase(host.name, "checks")
            signed = signed_checks(hc, generation)
            bad = [f"{r.name} ({r.detail})"
                   for r in checks_mod.run_all(hc, signed, generation) if not r.ok]
            if bad:
                raise HostError(host.name, "check failed: " + "; ".join(bad))
        events.phase(host.name, "done")
        return generation, state
    finally:
        hc.close()


def signed_checks(hc, generation):
    """The health checks generation *generation*'s manifest carries."""
    from fruixops.store import manifest
    r = hc.query(hc.receiver("manifest", generation))
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    try:
        return manifest.parse(r.stdout).checks
    except manifest.ManifestError as exc:
        raise HostError(hc.name, f"generation {generation}'s manifest: {exc}") from None


def reboot_host(ctl, host_name):
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    hc = boot.reboot(hc)
    try:
        return boot.state(hc)
    finally:
        hc.close()


def status(ctl, host_name):
    """The host's state; an outdated receiver is updated first (its answers
    grow with fruixops), a missing one is not installed."""
    from fruixops.rollout.bootstrap import install_receiver, receiver_state
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    try:
        if receiver_state(hc) == "outdated":
            install_receiver(hc)
        return boot.state(hc)
    finally:
        hc.close()


def verify(ctl, host_name):
    """Re-hash every store item the host's generations refer to against the
    listing recorded when it landed. Returns (ok, [report lines])."""
    from fruixops.rollout.bootstrap import install_receiver_if_missing
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    try:
        install_receiver_if_missing(hc)
        r = hc.run(hc.receiver("verify"))
    finally:
        hc.close()
    if r.status not in (0, 2):
        raise HostError(host.name, r.last_error_line())
    return r.status == 0, _verify_report(host.name, r.out)


def _verify_report(host, out):
    """The receiver's verify lines, checked: "corrupt generation N" for a cut
    or empty generation record, one line per item (ok, missing, unrecorded,
    drift), "config-edited PATH"/"config-missing PATH" for a managed file
    changed by hand since its activation, then "checked N"."""
    from fruixops.remote import hostreply
    lines = out.splitlines()
    for line in lines[:-1]:
        kind, _, rest = line.partition(" ")
        if kind == "corrupt" and rest.startswith("generation "):
            hostreply.number(host, "verify", rest[len("generation "):], line)
            continue
        path = rest.split(" ", 1)[0]
        if kind in ("config-edited", "config-missing") and path.startswith("/") and \
                "\t" not in path:
            continue        # a managed file changed by hand since its activation
        if kind not in ("ok", "missing", "unrecorded", "drift"):
            raise hostreply.MalformedReply(host, "verify", line)
        hostreply.store_path(host, "verify", path, line)
    last = lines[-1] if lines else ""
    if not last.startswith("checked "):
        raise hostreply.MalformedReply(host, "verify", last)
    hostreply.number(host, "verify", last[len("checked "):], last)
    return lines
