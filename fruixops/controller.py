"""The controller: one inventory, its local store and its signing key, and the
operations a user asks for. ``tasks.py`` and the tests both drive this."""

import threading
from pathlib import Path

from fruixops.inventory import model as inventory_mod
from fruixops.store import keys, manifest
from fruixops.system.build import Builder
from fruixops.errors import UserError


class Controller:
    def __init__(self, inventory_path=None, key=None):
        self.inventory = inventory_mod.load(inventory_path)
        # Every service a host declares is one fruixops can run: refused here,
        # with its file and line, before anything is built or sent.
        from fruixops.system.services import declare
        for host in self.inventory.hosts.values():
            declare.services_of(host)
        settings = self.inventory.settings
        self.store_root = settings.store or Path(".frx")
        self.builder = Builder(self.store_root, settings.zstd_level, self.inventory)
        self._key_path = Path(key) if key else settings.signing_key
        self._key = None
        self._uploader = None
        self._lock = threading.Lock()

    # -- build ---------------------------------------------------------------

    def build(self, base_name=None, host_name=None):
        """Build a base (and a host's system on it); return the store paths,
        kernel, bootloader, runtime, then the system when a host is given."""
        host = self.inventory.host(host_name) if host_name else None
        if host is None and not base_name:
            raise UserError("give --base (or --host to use the host's base)")
        base = self.inventory.base_for(host, base_name) if host else self.inventory.base(base_name)
        bb = self.builder.build_base(base)
        paths = list(bb.paths)
        if host:
            paths.append(self.builder.build_system(host, base).path)
        return paths

    def closure(self, host, base):
        """Build *host*'s system on *base*; return its closure (top last)."""
        top = self.builder.build_system(host, base)
        return self.builder.store.closure(top.path)

    def cache_uploader(self):
        """The uploader of deltas to the inventory's cache, shared by the
        hosts of a run; None when the cache has no upload target."""
        from fruixops.rollout import cache
        settings = self.inventory.settings.cache
        if not settings or not settings.upload:
            return None
        with self._lock:
            if self._uploader is None:
                self._uploader = cache.Uploader(settings, self.inventory.settings.known_hosts)
        return self._uploader

    # -- keys and manifests --------------------------------------------------

    @property
    def key_path(self):
        if self._key_path is None:
            raise UserError("no signing key: set fruixops.signing_key in the inventory "
                            "or give --key", where=str(self.inventory.path))
        return self._key_path

    @property
    def signing_key(self):
        if self._key is None:
            if self.inventory.settings.lab and self._key_path == self.inventory.settings.signing_key:
                keys.ensure(self.key_path)
            self._key = keys.load_private(self.key_path)
        return self._key

    @property
    def signer(self):
        return keys.key_name(self.key_path)

    def trusted_keys(self):
        """(name, PEM bytes) of the keys the inventory asks hosts to trust."""
        if self.inventory.settings.lab:
            self.signing_key   # noqa: B018 -- makes the lab key pair on first use
        out = []
        for path in self.inventory.settings.trusted_keys:
            keys.load_public(path)
            out.append((keys.key_name(path), Path(path).read_bytes()))
        return out

    def make_manifest(self, host_name, base_name=None, serial=None, checks=(), lifetime=None):
        """Build and sign: return (Manifest, manifest bytes, signature bytes).
        The manifest carries the built-in health checks and *checks*: the
        only ones the host will run for this generation. It expires after
        *lifetime* seconds (default: the host's manifest_lifetime)."""
        from fruixops.rollout.checks import BOOT_CHECKS, service_checks
        from fruixops.system.services import declare
        host = self.inventory.host(host_name)
        base = self.inventory.base_for(host, base_name)
        closure = [self.builder.store.for_manifest(it) for it in self.closure(host, base)]
        lifetime = lifetime or host.var("manifest_lifetime", manifest.DEFAULT_LIFETIME)
        try:
            m = manifest.new(host.name, closure, base, self.signer, serial=serial,
                             lifetime=lifetime,
                             checks=(tuple(BOOT_CHECKS) + service_checks(declare.services_of(host))
                                     + tuple(checks)))
        except ValueError as exc:
            raise UserError(f"{host.name}: {exc} (the built-in checks are "
                            f"{', '.join(c.name for c in BOOT_CHECKS)}, and booted)") from None
        data = m.render()
        return m, data, manifest.sign(data, self.signing_key)

    def write_manifest(self, host_name, base_name, out_dir):
        m, data, sig = self.make_manifest(host_name, base_name)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest").write_bytes(data)
        (out / "manifest.sig").write_bytes(sig)
        return m, out / "manifest", out / "manifest.sig"
