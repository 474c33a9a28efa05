"""Build: base declarations to kernel / bootloader / runtime items, and a host's
system to ``fruix-system-<host>``.

Paths are input-addressed: the hash covers the canonical declaration (every
field), the source content hash, the builder version and the references, so
the same declaration always gives the same path and, since archives are
canonical, the same bytes. Building what is already in the store is a cache hit.
"""

import hashlib
import json
import shutil
from dataclasses import dataclass

from . import archive, sources
from .errors import UserError
from .store import Item, LocalStore, StorePath

BUILDER_VERSION = "fruixops-builder-4"   # 2: boot/init hand-over, loader-bootable kernels; 3: modes in listings; 4: services in the foreground
BASE_PARTS = ("kernel", "bootloader", "runtime")


def _digest(obj):
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _part_of(rel):
    """Which base item a path of a FreeBSD staging tree goes into."""
    if rel == "boot/kernel" or rel.startswith("boot/kernel/"):
        return "kernel"
    if rel == "boot" or rel.startswith("boot/"):
        return "bootloader"
    return "runtime"


@dataclass
class BaseBuild:
    base: object
    items: dict        # part -> Item

    @property
    def paths(self):
        return [self.items[p].path for p in BASE_PARTS]


class Builder:
    def __init__(self, store_root, zstd_level=None):
        self.store = LocalStore(store_root, zstd_level)
        self.hash_cache = sources.HashCache(self.store.root / "hash-cache.json")
        self.cache_dir = self.store.root / "sources"
        self.built = 0          # items actually built (not cache hits) by this Builder
        self._bases = {}

    def base_paths(self, base):
        """The three store paths *base* builds to (checks the source pins)."""
        src_hash = sources.source_hash(base, self.hash_cache, self.cache_dir)
        self.hash_cache.save()
        decl = base.canonical()
        return {part: StorePath.make(
                    _digest({"builder": BUILDER_VERSION, "part": part, "declaration": decl,
                             "source": src_hash, "references": []}),
                    f"freebsd-native-{part}-{base.version_label}")
                for part in BASE_PARTS}

    def build_base(self, base):
        if base.name in self._bases:
            return self._bases[base.name]
        paths = self.base_paths(base)
        items = {part: self.store.get(p) for part, p in paths.items()}
        missing = [part for part, item in items.items() if item is None]
        if missing:
            scratch = self.store.new_tmp(f"stage-{base.name}")
            try:
                tree = sources.stage(base, scratch, self.cache_dir)
                for part in missing:
                    extra = _unbootable_kernel() if part == "kernel" and not base.boots else ()
                    items[part] = self._write(paths[part], (),
                                              lambda out, part=part, extra=extra: archive.write_tree(
                                                  out, tree, lambda rel: _part_of(rel) == part,
                                                  extra=extra))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        result = BaseBuild(base, items)
        self._bases[base.name] = result
        return result

    def system_path(self, host, base, base_paths=None):
        """The store path *host*'s system on *base* builds to (nothing is built)."""
        paths = base_paths or self.base_paths(base)
        refs = tuple(paths[p] for p in BASE_PARTS)
        return StorePath.make(
            _digest({"builder": BUILDER_VERSION, "system": system_declaration(host, base),
                     "references": [str(r) for r in refs]}),
            f"fruix-system-{host.name}"), refs

    def build_system(self, host, base):
        """Build *host*'s system on *base*; return its Item (the closure's top)."""
        bb = self.build_base(base)
        path, refs = self.system_path(host, base, {p: bb.items[p].path for p in BASE_PARTS})
        decl = system_declaration(host, base)
        existing = self.store.get(path)
        if existing:
            return existing
        entries = system_entries(decl, dict(zip(BASE_PARTS, refs)), path)
        return self._write(path, refs, lambda out: archive.write_tree(out, None, extra=entries))

    def _write(self, path, refs, writer):
        tmp = self.store.new_tmp(path.base)
        try:
            with open(tmp, "wb") as out:
                sha, size = writer(out)
            item = Item(path, sha, size, tuple(refs))
            self.store.add(item, tmp)
        except ValueError as exc:
            raise UserError(f"cannot build {path.name}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.built += 1
        return item


def _unbootable_kernel():
    """A base declared `boots: false` (lab only) gets a kernel file that is not
    an ELF image: FreeBSD's loader refuses to load it, as the lab's does."""
    return [("boot/kernel/kernel", "file",
             (b"not an ELF kernel: this base is declared boots: false\n", True))]


def system_declaration(host, base):
    return {"host": host.name, "base": base.canonical(),
            "init": host.var("init", "shepherd-pid1"),
            "services": sorted(set(host.var("services", ["sshd"]))),
            "boots": base.boots}


def system_entries(decl, refs, path):
    """The generated contents of a system item (at store path *path*): boot
    links, configuration, metadata, the activation hook and the boot-time
    hand-over that FreeBSD's init runs as init_exec."""
    base = decl["base"]
    services = decl["services"]
    rc_conf = [f'hostname="{decl["host"]}"'] + [f'{s}_enable="YES"' for s in services]
    scm = ["(use-modules (shepherd service))", "(register-services", " (list"]
    scm += [f"  (service '({s})\n"
            f"           #:start (make-forkexec-constructor '({_foreground_command(s)}))\n"
            f"           #:stop (make-kill-destructor)\n"
            f"           #:respawn? #t)"
            for s in services]
    scm += ["  ))", "(start-in-the-background '(" + " ".join(services) + "))"]
    meta = {"host": decl["host"], "base": base["name"], "version_label": base["version_label"],
            "release": base["release"], "branch": base["branch"], "init": decl["init"],
            "services": ",".join(services), "builder": BUILDER_VERSION,
            "kernel": str(refs["kernel"]), "bootloader": str(refs["bootloader"]),
            "runtime": str(refs["runtime"])}
    activate = "\n".join([
        "#!/bin/sh",
        "# Activation hook: run at boot with the closure as $1.",
        "set -eu",
        'system=${1:?usage: activate CLOSURE}',
        'mkdir -p /run/fruix',
        'ln -sfn "$system/etc" /run/fruix/etc',
        'echo "activated $system" >/run/fruix/activated',
        ""])
    return [
        ("boot/init", "file", (hand_over(path).encode(), True)),
        ("kernel", "symlink", str(refs["kernel"])),
        ("bootloader", "symlink", str(refs["bootloader"])),
        ("runtime", "symlink", str(refs["runtime"])),
        ("boot/kernel", "symlink", f"{refs['kernel']}/boot/kernel"),
        ("boot/loader", "symlink", f"{refs['bootloader']}/boot/loader"),
        ("boot/loader.efi", "symlink", f"{refs['bootloader']}/boot/loader.efi"),
        ("etc/rc.conf", "file", (("\n".join(rc_conf) + "\n").encode(), False)),
        ("etc/shepherd/config.scm", "file", (("\n".join(scm) + "\n").encode(), False)),
        ("metadata", "file", ("".join(f"{k}={v}\n" for k, v in sorted(meta.items())).encode(),
                              False)),
        ("activate", "file", (activate.encode(), True)),
    ]


# Shepherd supervises a daemon in the foreground: one that forks into the
# background looks to it like a process that exited at once. (Interim: the
# services catalogue of issue 22 replaces this.)
_FOREGROUND = {"sshd": ["-D"], "ntpd": ["-n"]}


def _foreground_command(service):
    return " ".join(f'"{w}"' for w in [f"/usr/sbin/{service}", *_FOREGROUND.get(service, [])])


def hand_over(system):
    """The system's boot/init: FreeBSD's init(8) runs it as PID 1 when the
    loader variable init_exec names it. It points /run/current-system at the
    system the loader booted (kenv fruix.system; this system if that is
    unset), by renaming a new link over the old one, runs the activation
    hook, then execs shepherd as PID 1 with the system's configuration."""
    return "\n".join([
        "#!/bin/sh",
        "# Fruix boot hand-over (init_exec): see fruixops/build.py, hand_over().",
        "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        "export PATH",
        "system=$(kenv -q fruix.system 2>/dev/null) || system=",
        f'[ -n "$system" ] && [ -d "$system" ] || system={system}',
        "mkdir -p /run",
        "ln -sfn \"$system\" /run/.current-system.new",
        "if mv --help 2>&1 | grep -q -- -T; then nofollow=-T; else nofollow=-h; fi",
        "mv -f \"$nofollow\" /run/.current-system.new /run/current-system",
        "sh \"$system/activate\" \"$system\" || echo \"fruix: activation of $system failed\" >&2",
        "exec shepherd --config \"$system/etc/shepherd/config.scm\"",
        ""])
