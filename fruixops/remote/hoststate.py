"""Facts about a host, parsed from the receiver's line-oriented answers:
generations; what FreeBSD's loader boots by default (``fruix.conf``) and
once (a pending ``nextboot.conf``); what it booted (``kenv``) and when
(``kern.boottime``); fruixops's current / rollback links."""

import re
from dataclasses import dataclass, field

from fruixops.remote import hostreply


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
    kernel: str | None = None     # the kernel file the loader loads for it

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
    booted_kernel: str | None = None      # kenv kernelname: the kernel file the loader loaded
    boottime: str | None = None           # kern.boottime, "SEC.USEC"
    loader_overrides: list = field(default_factory=list)  # "FILE:LINE: what" beside fruix.conf
    boot_fs: str | None = None            # "same", or "differs S B": /frx/store vs /boot
    trial: int | None = None              # an unconfirmed trial the receiver recorded
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

    def booted_kernel_expected(self):
        """The kernel file the booted generation loads, when known."""
        g = self.gen(self.booted_generation)
        return g.kernel if g is not None and g.closure == self.booted else None

    def kernel_mismatch(self):
        """Why the loaded kernel is not the booted generation's (one line),
        or None: when they agree, or when either is unknown (no
        kenv kernelname on an older loader or lab: unknown, not a mismatch)."""
        want = self.booted_kernel_expected()
        if self.booted_kernel is None or want is None or self.booted_kernel == want:
            return None
        return (f"the loader loaded kernel {self.booted_kernel}, not generation "
                f"{self.booted_generation}'s ({want})")

    def warnings(self):
        """What plan, deploy and status warn about, one line each: the loader
        files that override or suppress fruix.conf or the one-shot, a store
        the loader cannot reach, a loaded kernel that is not the booted
        generation's."""
        out = [f"warning: loader file {f}" for f in self.loader_overrides]
        if self.boot_fs_warning():
            out.append("warning: " + self.boot_fs_warning())
        if self.kernel_mismatch():
            out.append("warning: " + self.kernel_mismatch())
        return out

    def boot_fs_warning(self):
        """One line when the loader cannot reach the store's kernels, else None."""
        if self.boot_fs is None or self.boot_fs == "same":
            return None
        return ("/frx/store is not on /boot's file system: FreeBSD's loader reads kernels "
                "only from the boot file system, and cannot load a generation's kernel")

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
        ref["kernel"] = self.booted_kernel
        ref["kernel_expected"] = self.booted_kernel_expected()
        ref["kernel_mismatch"] = self.kernel_mismatch()
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
                "boot_fs": self.boot_fs, "trial": self.trial,
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


def _booted_kernel(state, key, rest, host, what, line):
    """kenv kernelname is the loader's; a path a hand-edited loader file made
    odd makes it unknown, never the host compromised (as fruix.system)."""
    if not rest:
        return
    if _KERNEL_FILE.match(rest):
        state.booted_kernel = rest
    else:
        state.booted_unknown = ((state.booted_unknown + "; ") if state.booted_unknown else ""
                                ) + f"kenv kernelname is {hostreply.excerpt(rest, 200)}"


def _boot_fs(state, key, rest, host, what, line):
    if rest and rest != "same" and not _BOOT_FS_DIFFERS.match(rest):
        raise hostreply.MalformedReply(host, what, line)
    state.boot_fs = rest or None


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
    kernel = kv.get("kernel") or None
    if kernel is not None:
        item, sep, rest = kernel.partition("/boot/")
        if not sep or rest != "kernel/kernel":
            raise hostreply.MalformedReply(host, what, line)
        hostreply.store_path(host, what, item, line)
    g = Generation(n, hostreply.store_path(host, what, kv.get("closure", ""), line),
                   num("received"), kv.get("deployer") or None, kv.get("signer") or None,
                   kv.get("base") or None, kv.get("version-label") or None, num("size"),
                   kernel)
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
_KERNEL_FILE = re.compile(r"^/[A-Za-z0-9._+@,/-]{0,1000}$")
_BOOT_FS_DIFFERS = re.compile(r"^differs [0-9]{1,20} [0-9]{1,20}$")
def _reuse(state, key, rest, host, what, line):
    state.reuse = rest == "yes"


def _fetch(state, key, rest, host, what, line):
    if rest not in ("fetch", "curl", "wget"):
        raise hostreply.MalformedReply(host, what, line)
    state.fetcher = rest


_LINE = {
    "host-name": _host_name, "last-serial": _last_serial, "booted": _booted,
    "booted-generation": _booted, "booted-kernel": _booted_kernel, "boot-fs": _boot_fs,
    "boottime": _boottime, "missing": _missing, "zstd": _zstd, "reuse": _reuse,
    "fetch": _fetch, "generation": _generation,
    "loader-override": _text, "lock": _text, "verified": _text,
    "bootloader-efi": _digest, "bootloader-lua": _digest, "corrupt-generation": _corrupt,
    **{k: _number_line for k in ("current", "rollback", "next-boot", "default", "trial")},
}
