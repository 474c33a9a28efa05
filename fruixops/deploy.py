"""Deploy: build, sign, push, switch, and optionally reboot into the new
closure and check what booted — for one host. Fleet-wide runs call this once
per host."""

from dataclasses import dataclass, field

from . import boot, push, switch
from .connection import HostConnection
from .controller import deployer_identity
from .errors import HostError


@dataclass
class DeployResult:
    host: str
    closure: str
    base: str
    version_label: str
    generation: int | None = None
    changed: bool = False
    items_sent: int = 0
    bytes_sent: int = 0
    booted: str | None = None
    notes: list = field(default_factory=list)

    def to_json(self):
        return dict(self.__dict__)


def connect(ctl, host):
    return HostConnection(host, ctl.inventory.settings.known_hosts).open()


def deploy(ctl, host_name, base_name=None, reboot=False, trial=False):
    host = ctl.inventory.host(host_name)
    m, data, sig = ctl.make_manifest(host_name, base_name)
    result = DeployResult(host.name, str(m.system), m.base, m.version_label)
    hc = connect(ctl, host)
    try:
        state = push.plan(hc, data, sig, ctl.trusted_keys())
        already = state.current_closure == str(m.system) and not state.missing
        if already and not trial:
            result.generation = state.current
            result.notes.append("closure already current; nothing sent")
        else:
            before = hc.bytes_sent
            result.generation, _landed = push.push(
                hc, m, data, sig, state.missing, ctl.builder.store, deployer_identity(),
                trial=trial)
            result.items_sent = len(state.missing)
            result.bytes_sent = hc.bytes_sent - before
            result.changed = True
        if reboot or trial:
            hc = boot.reboot(hc)
            now = boot.state(hc)
            result.booted = now.booted
            if result.booted != str(m.system):
                raise HostError(host.name, f"booted {result.booted or 'nothing'}, "
                                           f"expected {m.system}")
            if trial:
                switch.confirm(hc, result.generation)
        return result
    finally:
        hc.close()


def rollback(ctl, host_name, to=None, reboot=False):
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    try:
        generation = switch.rollback(hc, to)
        state = boot.state(hc)
        if reboot:
            hc = boot.reboot(hc)
            state = boot.state(hc)
            if state.booted != state.current_closure:
                raise HostError(host.name, f"booted {state.booted or 'nothing'}, expected "
                                           f"{state.current_closure}")
        return generation, state
    finally:
        hc.close()


def reboot_host(ctl, host_name):
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    hc = boot.reboot(hc)
    try:
        return boot.state(hc)
    finally:
        hc.close()


def status(ctl, host_name):
    host = ctl.inventory.host(host_name)
    hc = connect(ctl, host)
    try:
        return boot.state(hc)
    finally:
        hc.close()
