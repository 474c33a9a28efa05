"""Facts about a host, parsed from the receiver's line-oriented answers:
generations; what FreeBSD's loader boots by default (``fruix.conf``) and
once (a pending ``nextboot.conf``); what it booted (``kenv``) and when
(``kern.boottime``); fruixops's current / rollback links."""

import re
from dataclasses import dataclass, field

from . import hostreply


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
    booted_unknown: str | None = None     # why what booted is unknown (kenv junk)
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
    reuse: bool = False                                # plan: its store may hold new files
    fetcher: str | None = None                         # plan: fetch, curl or wget (pulls)

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
        fruixops generation. When kenv holds something that is not a store
        path, the closure is None and "unknown" says what kenv holds."""
        if self.booted is None and self.booted_generation is None and not self.booted_unknown:
            return None
        g = self.gen(self.booted_generation)
        same = g is not None and g.closure == self.booted
        ref = {"generation": self.booted_generation, "closure": self.booted,
               "base": g.base if same else None,
               "version_label": g.version_label if same else None}
        if self.booted_unknown:
            ref["unknown"] = self.booted_unknown
        return ref

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


def parse(text, host, what="status", extra=()):
    """The receiver's state lines (``status``, ``plan``), parsed strictly: a
    known line that is malformed fails the host (MalformedReply, one line).
    Numbers are digits, paths are store paths; free text (provenance, the
    lock's holder) arrives with its control characters already escaped.
    Lines whose key is in *extra* belong to the caller; other unknown keys
    are skipped (a newer receiver may say more)."""
    state = HostState()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if key in extra:
            continue
        _LINE.get(key, _skip)(state, key, rest, host, what, line)
    return state


def _number_line(state, key, rest, host, what, line):
    setattr(state, key.replace("-", "_"), hostreply.optional_number(host, what, rest, line))


def _host_name(state, key, rest, host, what, line):
    state.host_name = None if rest == "-" else rest


def _last_serial(state, key, rest, host, what, line):
    state.last_serial = hostreply.optional_number(host, what, rest, line) or 0


def _booted(state, key, rest, host, what, line):
    """kenv's fruix.system / fruix.generation come from the loader's files,
    which root may edit by hand (a trailing /): junk there makes what booted
    unknown, not the host compromised -- refusing it would leave only a root
    login to repair the host. The value is kept for display, escaped."""
    if not rest:
        return
    try:
        if key == "booted":
            state.booted = hostreply.store_path(host, what, rest, line)
        else:
            state.booted_generation = hostreply.number(host, what, rest, line)
    except hostreply.MalformedReply:
        kenv = "fruix.system" if key == "booted" else "fruix.generation"
        state.booted_unknown = ((state.booted_unknown + "; ") if state.booted_unknown else ""
                                ) + f"kenv {kenv} is {hostreply.excerpt(rest, 200)}"


def _boottime(state, key, rest, host, what, line):
    if rest and not _BOOTTIME.match(rest):
        raise hostreply.MalformedReply(host, what, line)
    state.boottime = rest or None


def _digest(state, key, rest, host, what, line):
    if rest not in ("", "-") and not _SHA256.match(rest):
        raise hostreply.MalformedReply(host, what, line)
    setattr(state, key.replace("-", "_"), None if rest in ("", "-") else rest)


def _text(state, key, rest, host, what, line):
    if key == "loader-override":
        state.loader_overrides.append(rest)
    elif key == "lock":
        state.lock = rest
    else:
        state.verified_by = rest


def _missing(state, key, rest, host, what, line):
    state.missing.append(hostreply.store_path(host, what, rest, line))


def _zstd(state, key, rest, host, what, line):
    if rest not in ("yes", "no"):
        raise hostreply.MalformedReply(host, what, line)
    state.zstd = rest == "yes"


def _generation(state, key, rest, host, what, line):
    number, _, fields = rest.partition(" ")
    n = hostreply.number(host, what, number, line)
    kv = {}
    for f in fields.split():
        k, sep, v = f.partition("=")
        if not sep or k in kv:
            raise hostreply.MalformedReply(host, what, line)
        kv[k] = v
    num = lambda k: hostreply.optional_number(host, what, kv.get(k), line)  # noqa: E731
    if (num("received") or 0) > _LATEST_TIME:
        raise hostreply.MalformedReply(host, what, line)
    g = Generation(n, hostreply.store_path(host, what, kv.get("closure", ""), line),
                   num("received"), kv.get("deployer") or None, kv.get("signer") or None,
                   kv.get("base") or None, kv.get("version-label") or None, num("size"))
    if n in state.generations:
        raise hostreply.MalformedReply(host, what, line)
    state.generations[n] = g


def _corrupt(state, key, rest, host, what, line):
    state.corrupt.append(hostreply.number(host, what, rest, line))


def _skip(state, key, rest, host, what, line):
    pass


_LATEST_TIME = 2**35          # seconds since 1970: the year 3058
_BOOTTIME = re.compile(r"^[0-9]{1,18}\.[0-9]{1,9}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
def _reuse(state, key, rest, host, what, line):
    state.reuse = rest == "yes"


def _fetch(state, key, rest, host, what, line):
    if rest not in ("fetch", "curl", "wget"):
        raise hostreply.MalformedReply(host, what, line)
    state.fetcher = rest


_LINE = {
    "host-name": _host_name, "last-serial": _last_serial, "booted": _booted,
    "booted-generation": _booted,
    "boottime": _boottime, "missing": _missing, "zstd": _zstd, "reuse": _reuse,
    "fetch": _fetch, "generation": _generation,
    "loader-override": _text, "lock": _text, "verified": _text,
    "bootloader-efi": _digest, "bootloader-lua": _digest, "corrupt-generation": _corrupt,
    **{k: _number_line for k in ("current", "rollback", "next-boot", "default")},
}
