"""Facts about a host, parsed from the receiver's line-oriented answers:
generations, which is current / rollback / next boot, what is booted."""

from dataclasses import dataclass, field


@dataclass
class Generation:
    number: int
    closure: str
    received: int | None = None
    deployer: str | None = None
    signer: str | None = None
    base: str | None = None
    version_label: str | None = None
    size: int | None = None       # bytes of the closure's item archives

    def to_json(self):
        return {"generation": self.number, "closure": self.closure, "base": self.base,
                "size": self.size,
                "version_label": self.version_label, "signer": self.signer,
                "deployer": self.deployer, "received": self.received}


@dataclass
class HostState:
    host_name: str | None = None
    last_serial: int = 0
    current: int | None = None
    rollback: int | None = None
    next_boot: int | None = None
    booted: str | None = None
    lock: str | None = None
    generations: dict = field(default_factory=dict)   # number -> Generation
    missing: list = field(default_factory=list)        # plan: store paths to send
    verified_by: str | None = None                     # plan: the key that verified
    zstd: bool = False                                 # plan: the host can decompress zstd

    def gen(self, number):
        return self.generations.get(number) if number is not None else None

    @property
    def current_closure(self):
        g = self.gen(self.current)
        return g.closure if g else None

    def to_json(self, host):
        def ref(n):
            g = self.gen(n)
            if g is None:
                return None
            return {"generation": g.number, "closure": g.closure, "base": g.base,
                    "version_label": g.version_label}
        return {"host": host, "booted": self.booted, "current": ref(self.current),
                "rollback": ref(self.rollback), "next_boot": ref(self.next_boot),
                "generations": len(self.generations), "locked_by": self.lock}


def _num(text):
    return int(text) if text and text.isdigit() else None


def parse(text):
    state = HostState()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if key == "host-name":
            state.host_name = None if rest == "-" else rest
        elif key == "last-serial":
            state.last_serial = _num(rest) or 0
        elif key in ("current", "rollback", "next-boot"):
            setattr(state, key.replace("-", "_"), _num(rest))
        elif key == "booted":
            state.booted = rest or None
        elif key == "lock":
            state.lock = rest
        elif key == "missing":
            state.missing.append(rest)
        elif key == "zstd":
            state.zstd = rest == "yes"
        elif key == "verified":
            state.verified_by = rest
        elif key == "generation":
            number, _, fields = rest.partition(" ")
            kv = dict(f.split("=", 1) for f in fields.split() if "=" in f)
            g = Generation(int(number), kv.get("closure", ""), _num(kv.get("received")),
                           kv.get("deployer") or None, kv.get("signer") or None,
                           kv.get("base") or None, kv.get("version-label") or None,
                           _num(kv.get("size")))
            state.generations[g.number] = g
    return state
