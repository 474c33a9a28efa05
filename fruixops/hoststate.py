"""Facts about a host, parsed from the receiver's line-oriented answers:
generations; what FreeBSD's loader boots by default (``fruix.conf``) and
once (a pending ``nextboot.conf``); what it booted (``kenv``) and when
(``kern.boottime``); fruixops's current / rollback links."""

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
    next_boot: int | None = None          # a pending one-shot (nextboot.conf)
    default: int | None = None            # the loader's default (fruix.conf)
    booted: str | None = None             # kenv fruix.system
    booted_generation: int | None = None  # kenv fruix.generation
    boottime: str | None = None           # kern.boottime, "SEC.USEC"
    loader_overrides: list = field(default_factory=list)  # files that win over fruix.conf
    bootloader_efi: str | None = None     # plan: sha256 of the ESP's loader.efi
    bootloader_lua: str | None = None     # plan: sha256 of /boot/lua's listing
    lock: str | None = None
    corrupt: list = field(default_factory=list)        # generations whose record is cut or empty
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

    def booted_ref(self):
        """What the loader booted, as {generation, closure, base, version_label}
        (base and label from the generation's record, when it still has it
        and it names the same closure); None when the host booted no
        fruixops generation."""
        if self.booted is None and self.booted_generation is None:
            return None
        g = self.gen(self.booted_generation)
        same = g is not None and g.closure == self.booted
        return {"generation": self.booted_generation, "closure": self.booted,
                "base": g.base if same else None,
                "version_label": g.version_label if same else None}

    def to_json(self, host):
        def ref(n):
            g = self.gen(n)
            if g is None:
                return None
            return {"generation": g.number, "closure": g.closure, "base": g.base,
                    "version_label": g.version_label}
        return {"host": host, "booted": self.booted_ref(), "boottime": self.boottime,
                "default": ref(self.default), "current": ref(self.current),
                "rollback": ref(self.rollback), "next_boot": ref(self.next_boot),
                "loader_overrides": self.loader_overrides,
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
        elif key in ("current", "rollback", "next-boot", "default", "booted-generation"):
            setattr(state, key.replace("-", "_"), _num(rest))
        elif key == "booted":
            state.booted = rest or None
        elif key == "corrupt-generation":
            if _num(rest) is not None:
                state.corrupt.append(_num(rest))
        elif key == "boottime":
            state.boottime = rest or None
        elif key == "loader-override":
            state.loader_overrides.append(rest)
        elif key in ("bootloader-efi", "bootloader-lua"):
            setattr(state, key.replace("-", "_"), None if rest in ("", "-") else rest)
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
