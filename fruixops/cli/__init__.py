"""The command line: Invoke tasks that parse arguments and call the library.

``tasks.py`` at the project root re-exports this namespace for ``inv``; the
``fruixops`` console script runs the same tasks. Errors a user can cause print
one line and exit with the status documented in the README.
"""

from invoke import Collection, Program

from .. import __version__
from .inventory import hosts as hosts_task
from .offline import bundle_export, bundle_import, cache_push, cache_verify
from .hosts import (deploy, diff_generations, gc, generations, plan, play, reboot, rollback,
                    status, verify)
from .setup import (bootstrap, build, demo, hostkey_accept, keys_authorize, keys_generate,
                    lab_down, lab_power_cycle, lab_reset, lab_up, manifest, store_gc,
                    trust_add, trust_remove)

keys_ns = Collection("keys")
keys_ns.add_task(keys_generate, name="generate")
keys_ns.add_task(keys_authorize, name="authorize")

trust_ns = Collection("trust")
trust_ns.add_task(trust_add, name="add")
trust_ns.add_task(trust_remove, name="remove")

store_ns = Collection("store")
store_ns.add_task(store_gc, name="gc")

hostkey_ns = Collection("hostkey")
hostkey_ns.add_task(hostkey_accept, name="accept")

lab_ns = Collection("lab")
for t, n in ((lab_up, "up"), (lab_down, "down"), (lab_reset, "reset"),
             (lab_power_cycle, "power-cycle")):
    lab_ns.add_task(t, name=n)

cache_ns = Collection("cache")
cache_ns.add_task(cache_push, name="push")
cache_ns.add_task(cache_verify, name="verify")

bundle_ns = Collection("bundle")
bundle_ns.add_task(bundle_export, name="export")
bundle_ns.add_task(bundle_import, name="import")

ns = Collection()
for t in (build, manifest, deploy, rollback, reboot, status, generations, bootstrap, demo,
          play, verify, plan, gc):
    ns.add_task(t)
ns.add_task(diff_generations, name="diff")
ns.add_task(hosts_task, name="hosts")
for sub in (keys_ns, trust_ns, hostkey_ns, store_ns, lab_ns, cache_ns, bundle_ns):
    ns.add_collection(sub)


def main():
    Program(namespace=ns, version=__version__, name="fruixops", binary="fruixops").run()


__all__ = ["ns", "main"]
