"""The `fruixops:` block of an inventory: the fleet's own settings (signing
and trusted keys, known_hosts, the local store, the lab, the compression
level, the item cache), as opposed to its hosts and bases (inventory.py)."""

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fruixops.inventory import yamlfile
from fruixops.inventory.yamlfile import Fields, check_type, key_node, value_node


@dataclass
class Settings:
    signing_key: Path | None = None
    trusted_keys: list = field(default_factory=list)
    known_hosts: Path | None = None
    store: Path | None = None
    lab: bool = False
    zstd_level: int = 19     # items' compressed archives (made once, at build time)
    cache: object = None     # cache.CacheSettings: hosts pull items over HTTP
    ids: Path | None = None  # the uid/gid ledger (fruixops.system.config.ids); default: in the store



# -- the item cache (fruixops.rollout.cache uses these) --------------------------

DEFAULT_PARALLEL = 4
# The receiver takes a URL as one word of its argument alphabet (access.sh).
URL_RE = re.compile(r"^https?://[A-Za-z0-9._:@=+/-]+/$")
SSH_RE = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+)"
                    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/.*)$")


@dataclass(frozen=True)
class CacheSettings:
    url: str                  # what hosts fetch from (ends in /)
    upload: str | None        # a directory, or ssh://..., or None (pull only)
    parallel: int = DEFAULT_PARALLEL   # pulls in flight per host
    upload_key: str | None = None      # the SSH key for an ssh:// upload
    grace: int = 30                    # s a pull may take besides its bytes...
    min_rate: int = 64 << 10           # ...at this many bytes/s (slower: pushed)


def check_url(url):
    """*url* with a trailing slash, or ValueError saying what is wrong."""
    if not url.endswith("/"):
        url += "/"
    if not URL_RE.match(url) or ".." in url:
        raise ValueError(f"bad cache url {url!r}: http:// or https://, then letters, digits "
                         "and . _ : @ = + / - only")
    return url


def read(blocks):
    """The inventory's `fruixops:` block (one, in one of its sources)."""
    if not blocks:
        return Settings()
    if len(blocks) > 1:
        raise key_node(blocks[1][1], "fruixops", blocks[1][0]).error(
            f"fruixops settings are already declared in {blocks[0][0]}")
    path, doc = blocks[0]
    here = path.parent
    f = Fields(value_node(doc, "fruixops", path), {"signing_key", "trusted_keys", "known_hosts",
                                                   "store", "lab", "zstd_level", "cache", "ids"},
               "fruixops settings")
    trusted = []
    for i, _ in enumerate(f.get("trusted_keys", list, [])):
        node = yamlfile.item_node(f.map["trusted_keys"], i, path)
        check_type(node, str, "a trusted key")
        trusted.append(here / node.value)
    opt = lambda key: here / f.get(key, str) if f.get(key, str) else None  # noqa: E731
    level = f.get("zstd_level", int, Settings.zstd_level)
    if not 1 <= level <= 22:
        raise f.node_of("zstd_level").error("zstd_level must be 1 to 22")
    return Settings(signing_key=opt("signing_key"), trusted_keys=trusted,
                    known_hosts=opt("known_hosts"), store=opt("store"),
                    lab=f.get("lab", bool, False), zstd_level=level, ids=opt("ids"),
                    cache=_cache(f, here) if "cache" in f else None)


def _cache(f, here):
    """fruixops.cache: {url, upload, upload_key, parallel, grace, min_rate_kib}."""
    cache = sys.modules[__name__]
    node = f.node_of("cache")
    c = Fields(node, {"url", "upload", "upload_key", "parallel", "grace", "min_rate_kib"},
               "cache settings")
    try:
        url = cache.check_url(c.get("url", str, required=True))
    except ValueError as exc:
        raise c.node_of("url").error(str(exc)) from None
    upload = c.get("upload", str)
    if upload and not upload.startswith("ssh:"):
        upload = str((here / upload).resolve())
    key = c.get("upload_key", str)
    parallel = c.get("parallel", int, cache.DEFAULT_PARALLEL)
    if not 1 <= parallel <= 32:
        raise c.node_of("parallel").error("parallel must be 1 to 32")
    grace = c.get("grace", int, 30)
    if not 1 <= grace <= 3600:
        raise c.node_of("grace").error("grace must be 1 to 3600 (seconds)")
    min_rate = c.get("min_rate_kib", int, 64)
    if not 1 <= min_rate <= 1 << 20:
        raise c.node_of("min_rate_kib").error("min_rate_kib must be 1 to 1048576 (KiB/s)")
    return cache.CacheSettings(url=url, upload=upload, parallel=parallel,
                               upload_key=str(here / key) if key else None,
                               grace=grace, min_rate=min_rate << 10)
