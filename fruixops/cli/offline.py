"""Tasks for items that do not go over the controller's SSH: the HTTP cache
hosts pull from (cache.push) and offline bundles (bundle.export,
bundle.import)."""

from invoke import Exit

from fruixops.rollout import cache as cache_mod
from fruixops.rollout import offline
from fruixops.controller import Controller
from fruixops.errors import EXIT_FAILED, UserError
from fruixops.cli.common import INVENTORY_HELP, LIMIT_HELP, _need_host, _print_json, _targets, user_task


def _hosts(ctl, host, limit, what):
    """--host or --limit; with neither, every host of the inventory."""
    if not host and not limit:
        return list(ctl.inventory.hosts.values())
    return _targets(ctl, host, limit, what)


@user_task(name="push", help={"base": "base (default: each host's)", "host": "only this host's "
                              "items", "limit": LIMIT_HELP, "inventory": INVENTORY_HELP,
                              "json": "print a machine-readable result"})
def cache_push(c, base=None, host=None, limit=None, inventory=None, json=False):
    """Upload the items the hosts need (default: every host) to the
    inventory's cache; objects already there are skipped."""
    ctl = Controller(inventory)
    settings = ctl.inventory.settings.cache
    if not settings:
        raise UserError("the inventory names no cache (fruixops.cache: {url, upload})",
                        where=str(ctl.inventory.path))
    hosts = _hosts(ctl, host, limit, "cache.push")
    items = cache_mod.closure_items(ctl, hosts, base)
    target = cache_mod.target_for(settings, ctl.inventory.settings.known_hosts)

    def progress(name, size):
        if not json:
            print(f"  uploaded {name} ({size} bytes)", flush=True)
    report = cache_mod.push(ctl.builder.store, items, target, progress)
    if json:
        return _print_json(report.to_json())
    print(f"cache {settings.upload}: {report.items} items for {len(hosts)} hosts; uploaded "
          f"{report.uploaded} objects ({report.uploaded_bytes} bytes), {report.present} "
          "already there")


@user_task(name="verify", help={"inventory": INVENTORY_HELP, "json": "print JSON",
                                "repair": "delete the bad objects (the next cache.push "
                                          "uploads them again)"})
def cache_verify(c, inventory=None, json=False, repair=False):
    """Re-hash every object in the cache's upload target against its name;
    exit 2 if any is wrong (hosts would refuse it and be pushed the item)."""
    ctl = Controller(inventory)
    settings = ctl.inventory.settings.cache
    if not settings:
        raise UserError("the inventory names no cache (fruixops.cache: {url, upload})",
                        where=str(ctl.inventory.path))
    bad, checked = cache_mod.verify(cache_mod.target_for(settings,
                                                         ctl.inventory.settings.known_hosts),
                                    repair=repair)
    if json:
        _print_json({"checked": checked, "bad": [{"object": n, "why": w} for n, w in bad]})
    else:
        for name, why in bad:
            print(f"bad {name}: {why}")
        print(f"checked {checked} objects in {settings.upload}; {len(bad)} bad")
    if bad:
        raise Exit(code=EXIT_FAILED)


@user_task(name="export", help={"host": "host the bundle is for", "limit": LIMIT_HELP,
                                "base": "base (default: each host's)",
                                "out": "the bundle file to write",
                                "valid": "how long the bundle may wait before it is imported "
                                         "(e.g. 12h, 7d; default: the hosts' "
                                         "manifest_lifetime)",
                                "compress": "items as zstd (default) or none (for hosts "
                                            "without zstd)",
                                "inventory": INVENTORY_HELP, "json": "print the result as JSON"})
def bundle_export(c, host=None, limit=None, base=None, out=None, valid=None, compress="zstd",
                  inventory=None, json=False):
    """Write one file holding what --host (or every --limit host) needs:
    signed manifests and items, each item once."""
    if not out:
        raise UserError("bundle.export needs --out FILE")
    if compress not in ("zstd", "none"):
        raise UserError(f"--compress must be zstd or none, not {compress!r}")
    ctl = Controller(inventory)
    hosts = _targets(ctl, host, limit, "bundle.export")
    lifetime = offline.parse_duration(valid) if valid else None
    done = offline.export(ctl, hosts, out, base, lifetime=lifetime, compress=compress == "zstd")
    if json:
        return _print_json(done.to_json())
    print(f"{done.path}: {len(done.hosts)} hosts ({', '.join(done.hosts)}), {done.items} items, "
          f"{done.bytes} bytes")


@user_task(name="import", positional=["file"],
           help={"file": "the bundle file", "host": "host to import it on (over SSH)",
                 "reboot": "reboot into the new generation and check what booted",
                 "inventory": INVENTORY_HELP})
def bundle_import(c, file=None, host=None, reboot=False, inventory=None):
    """Send a bundle to a reachable host and import it there: the host
    verifies it as it would a deploy. (On a host out of reach: copy the file
    in and run `sh /var/lib/fruix/fruixops/receiver import FILE`.)"""
    if not file:
        raise UserError("bundle.import needs FILE")
    _need_host(host, "bundle.import")
    ctl = Controller(inventory)
    for line in offline.import_over_ssh(ctl, ctl.inventory.host(host), file, reboot=reboot):
        print(line)
