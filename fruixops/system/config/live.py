"""The live switch: a generation's configuration made the one in force on a
running host, without a reboot, when it runs the kernel and base the host
runs (the receiver's ``activate N``; fruixops/host/config.sh). The host
stages and validates every new file, applies files and accounts as one
change, then restarts exactly the services whose restart key changed."""

from dataclasses import dataclass, field

from fruixops.errors import HostError


@dataclass
class Activation:
    generation: int
    activated: bool = False
    reboot_needed: str | None = None     # why it waits for the next boot
    changed: list = field(default_factory=list)     # "changed PATH", "removed PATH", ...
    kept: list = field(default_factory=list)        # (path, copy, why)
    accounts: bool = False
    restarted: list = field(default_factory=list)
    started: list = field(default_factory=list)
    stopped: list = field(default_factory=list)
    failed: list = field(default_factory=list)      # "restart nginx", ...

    def notes(self):
        out = []
        if self.reboot_needed:
            out.append(f"generation {self.generation} takes effect at the next boot "
                       f"({self.reboot_needed})")
            return out
        for path, copy, why in self.kept:
            out.append(f"{path} was {why} on the host: kept at {copy}, then replaced")
        if self.activated:
            what = [f"{len(self.changed)} managed files changed"] if self.changed else []
            what += ["accounts updated"] if self.accounts else []
            for verb, names in (("restarted", self.restarted), ("started", self.started),
                                ("stopped", self.stopped)):
                if names:
                    what.append(f"{verb} {', '.join(names)}")
            out.append(f"generation {self.generation} activated live"
                       + (f": {'; '.join(what)}" if what else " (no change to apply)"))
        return out

    def to_json(self):
        return dict(self.__dict__)


def activate(hc, generation):
    """Run the receiver's activate for *generation*; an Activation. A refusal
    (a validate command that fails, an account conflict) raises HostError
    with the host's line: the previous configuration is still in force."""
    from fruixops.remote.receiver import install_receiver, receiver_state
    if receiver_state(hc) == "outdated":
        install_receiver(hc)
    with hc.working():
        r = hc.run(hc.receiver("activate", generation))
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    return parse(generation, r.out)


def parse(generation, out):
    a = Activation(generation)
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        if word == "kept":
            _, path, copy, why = (line.split(" ", 3) + ["", "", ""])[:4]
            a.kept.append((path, copy, why))
        elif word == "reboot-needed":
            a.reboot_needed = rest
        elif word in ("changed", "removed", "restored"):
            a.changed.append(line)
        elif word == "accounts":
            a.accounts = True
        elif word == "restart":
            a.restarted.append(rest)
        elif word == "start":
            a.started.append(rest)
        elif word == "stop":
            a.stopped.append(rest)
        elif word == "failed":
            a.failed.append(rest)
        elif word == "activated":
            a.activated = True
    return a
