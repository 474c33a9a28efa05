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

BUILDER_VERSION = "fruixops-builder-1"
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
    def __init__(self, store_root):
        self.store = LocalStore(store_root)
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
                    items[part] = self._write(paths[part], (),
                                              lambda out, part=part: archive.write_tree(
                                                  out, tree, lambda rel: _part_of(rel) == part))
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
        entries = system_entries(decl, dict(zip(BASE_PARTS, refs)))
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


def system_declaration(host, base):
    return {"host": host.name, "base": base.canonical(),
            "init": host.var("init", "shepherd-pid1"),
            "services": sorted(set(host.var("services", ["sshd"]))),
            "boots": base.boots}


def system_entries(decl, refs):
    """The generated contents of a system item: boot links, configuration,
    metadata and the activation hook."""
    base = decl["base"]
    services = decl["services"]
    rc_conf = [f'hostname="{decl["host"]}"'] + [f'{s}_enable="YES"' for s in services]
    scm = ["(use-modules (shepherd service))", "(register-services"]
    scm += [f"  (service '({s}) #:start (make-forkexec-constructor '(\"/usr/sbin/{s}\")))"
            for s in services]
    scm += [")", "(start-in-the-background '(" + " ".join(services) + "))"]
    meta = {"host": decl["host"], "base": base["name"], "version_label": base["version_label"],
            "release": base["release"], "branch": base["branch"], "init": decl["init"],
            "services": ",".join(services), "builder": BUILDER_VERSION,
            "boots": "yes" if decl["boots"] else "no",
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
