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

from fruixops.store import archive, sources
from fruixops.errors import UserError
from fruixops.store.local import Item, LocalStore, StorePath

# 2: boot/init hand-over, loader-bootable kernels; 3: modes in listings; 4: the early
# boot through FreeBSD's rc, services in the foreground (fruixops.system.services); 5: the
# host's configuration (fruixops.system.config), applied by the receiver's activation.
BUILDER_VERSION = "fruixops-builder-5"
BASE_PARTS = ("kernel", "bootloader", "runtime")
RECEIVER = "/var/lib/fruix/fruixops/receiver"     # receiver.PATH, where activation lives


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
    def __init__(self, store_root, zstd_level=None, inventory=None):
        self.store = LocalStore(store_root, zstd_level)
        self.inventory = inventory      # for host configuration: templates, the id ledger
        self._configs = {}
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

    def config(self, host):
        """*host*'s configuration, rendered once per build (templates, ids)."""
        if host.name not in self._configs:
            from fruixops.system import secrets
            from fruixops.system.config import render
            from fruixops.system.services import declare
            # Templates may name a secret's path (secrets.NAME.path), never its value.
            self._configs[host.name] = render.render(host, self.inventory,
                                                     declare.services_of(host),
                                                     secret_paths=secrets.paths(host))
        return self._configs[host.name]

    def system_path(self, host, base, base_paths=None):
        """The store path *host*'s system on *base* builds to (nothing is built)."""
        paths = base_paths or self.base_paths(base)
        refs = tuple(paths[p] for p in BASE_PARTS)
        return StorePath.make(
            _digest({"builder": BUILDER_VERSION,
                     "system": system_declaration(host, base, self.config(host)),
                     "references": [str(r) for r in refs]}),
            f"fruix-system-{host.name}"), refs

    def build_system(self, host, base):
        """Build *host*'s system on *base*; return its Item (the closure's top)."""
        bb = self.build_base(base)
        path, refs = self.system_path(host, base, {p: bb.items[p].path for p in BASE_PARTS})
        config = self.config(host)
        decl = system_declaration(host, base, config)
        existing = self.store.get(path)
        if existing:
            return existing
        entries = system_entries(decl, dict(zip(BASE_PARTS, refs)), path, config)
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


def system_declaration(host, base, config):
    from fruixops.system.services import declare, shepherd
    where = host.where.split(":")[0]
    decl = {"host": host.name, "base": base.canonical(), "config": config.canonical(),
            "init": host.var("init", "shepherd-pid1"),
            # Where it was declared (the inventory's directory and file, not
            # where the checkout lives): named by the files generated from it.
            "source": "/".join(where.replace("\\", "/").split("/")[-2:]),
            "services": [shepherd.canonical(s) for s in declare.services_of(host)],
            "boots": base.boots}
    decl.update(_secrets_declaration(host))
    return decl


def system_entries(decl, refs, path, config):
    """The generated contents of a system item (at store path *path*): boot
    links, configuration, metadata, the activation hook and the boot-time
    hand-over that FreeBSD's init runs as init_exec."""
    from fruixops.system.services import catalogue, shepherd
    base = decl["base"]
    services = [catalogue.Service(name=s["name"], command=tuple(s["command"]), rc=s["rc"],
                                  requires=tuple(s["requires"]), user=s["user"],
                                  group=s["group"], respawn=s["respawn"],
                                  respawn_limit=(tuple(s["respawn_limit"])
                                                 if s["respawn_limit"] else None),
                                  environment=tuple(s["environment"]),
                                  doc=catalogue.CATALOGUE[s["name"]].doc
                                  if s["name"] in catalogue.CATALOGUE else
                                  f"declared in {decl['source']}")
                for s in decl["services"]]
    names = [s.name for s in services]
    rc_conf = [f"# Generated by fruixops for host {decl['host']} ({decl['source']}): this",
               "# system's rc.conf. FreeBSD's rc reads it last (the host's /etc/rc.conf",
               "# adds it to rc_conf_files), while it brings the host up before shepherd.",
               f'hostname="{decl["host"]}"'] + shepherd.rc_conf_lines(services)
    if config.rc_conf:
        from fruixops.system.config.render import rc_quote
        rc_conf += ["# rc_conf: (the inventory's)"] + [f'{n}="{rc_quote(v)}"'
                                                     for n, v in config.rc_conf.items()]
    scm = shepherd.config_scm(services, decl["host"], decl["source"])
    meta = {"host": decl["host"], "base": base["name"], "version_label": base["version_label"],
            "release": base["release"], "branch": base["branch"], "init": decl["init"],
            "services": ",".join(names), "builder": BUILDER_VERSION,
            "kernel": str(refs["kernel"]), "bootloader": str(refs["bootloader"]),
            "runtime": str(refs["runtime"])}
    activate = "\n".join([
        "#!/bin/sh",
        "# Activation hook: run at boot with the closure as $1, once FreeBSD's rc",
        "# has brought the host up (file systems read-write, network), before",
        "# shepherd starts the services. The receiver applies the system's",
        "# configuration (config/: files, accounts) as one change: see",
        "# fruixops/host/config.sh and docs/configuration.md.",
        "set -eu",
        'system=${1:?usage: activate CLOSURE}',
        f'exec sh {RECEIVER} activate --boot "$system"',
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
        ("etc/shepherd/config.scm", "file", (scm.encode(), False)),
        ("metadata", "file", ("".join(f"{k}={v}\n" for k, v in sorted(meta.items())).encode(),
                              False)),
        ("activate", "file", (activate.encode(), True)),
    ] + config.entries() + _secrets_entries(decl)


# --- secrets (fruixops.system.secrets): one declaration key, one file, one activation line.
# Names, version tags, paths, owners and modes only: never a value, nor a hash of one.
# A host that declares none builds exactly as before.

def _secrets_declaration(host):
    from fruixops.system import secrets
    entries = secrets.system_entry(host)
    return {"secrets": entries} if entries else {}


def _secrets_entries(decl):
    """config/secrets: what the receiver's secrets_activate reads."""
    from fruixops.system.secrets.declare import config_text
    if not decl.get("secrets"):
        return []
    text = config_text(decl["secrets"], decl["host"], decl["source"])
    return [("config/secrets", "file", (text.encode(), False))]


def hand_over(system):
    """The system's boot/init: FreeBSD's init(8) runs it as PID 1 when the
    loader variable init_exec names it (init_exec replaces init itself, so
    nothing of init's own work has happened). It does what init would have
    done before multi-user, then hands the host to shepherd:

    1. /run: a tmpfs unless /run is writable already (the root file system
       is read-only as the kernel mounted it), and /run/current-system ->
       the system the loader booted (kenv fruix.system; this one if unset);
    2. FreeBSD's own early boot: ``/bin/sh /etc/rc autoboot``, as init(8)
       runs it (fsck, root read-write, fstab, swap, hostname, network,
       syslogd, ...), with this system's rc.conf read last;
    3. activation (a failure is recorded, the previous configuration stays
       and the boot goes on: the activation_ran check fails); 4. ``exec
       shepherd`` with the system's configuration.

    A step that fails is named on the console and PID 1 exits: the kernel
    panics and the machine resets, so a trial comes back to the loader's
    default generation."""
    return "\n".join([
        "#!/bin/sh",
        "# Fruix boot hand-over (init_exec): see fruixops/system/build.py, hand_over(),",
        "# and docs/host-contract.md, \"The boot sequence\".",
        "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        "export PATH",
        'say() { echo "fruix boot: $*"; }',
        'fail() { echo "fruix boot: step $*; halting" >&2; exit 1; }',
        "system=$(kenv -q fruix.system 2>/dev/null) || system=",
        f'[ -n "$system" ] && [ -d "$system" ] || system={system}',
        'say "1/4 /run, current system $system"',
        "if [ ! -w /run ]; then",
        '    mount -t tmpfs -o mode=0755 tmpfs /run || fail "1/4: cannot mount a tmpfs on /run"',
        "fi",
        "ln -sfn \"$system\" /run/.current-system.new || fail \"1/4: /run is not writable\"",
        "if mv --help 2>&1 | grep -q -- -T; then nofollow=-T; else nofollow=-h; fi",
        "mv -f \"$nofollow\" /run/.current-system.new /run/current-system",
        'say "2/4 /etc/rc autoboot (FreeBSD\'s early boot)"',
        '/bin/sh /etc/rc autoboot || fail "2/4: /etc/rc failed (exit $?)"',
        'say "3/4 activation"',
        # A configuration that does not apply (a validate command refusing a
        # file, an account conflict) leaves the previous one in force and is
        # recorded in /run/fruix/activated, which the activation_ran check
        # reads: the boot goes on (a trial then fails its checks and goes
        # back), rather than halting a host whose default it is for good.
        'sh "$system/activate" "$system" ||',
        '    echo "fruix boot: step 3/4: activation of $system failed; the previous '
        'configuration stays in force" >&2',
        'say "4/4 shepherd"',
        "exec shepherd --config \"$system/etc/shepherd/config.scm\"",
        'fail "4/4: cannot run shepherd"',
        ""])
