"""The command line: Invoke tasks that parse arguments and call the library.

``tasks.py`` at the project root re-exports this namespace for ``inv``; the
``fruixops`` console script runs the same tasks. Errors a user can cause print
one line and exit with the status documented in the README.
"""

from invoke import Collection, Program

from fruixops import __version__
from fruixops.cli.inventory import hosts as hosts_task
from fruixops.cli.secrets import secrets_rotate, secrets_rotate_key
from fruixops.cli.offline import bundle_export, bundle_import, cache_push, cache_verify
from fruixops.cli.hosts import (deploy, diff_generations, gc, generations, plan, play, reboot, rollback, 
                    status, verify)
from fruixops.cli.setup import (bootstrap, build, demo, hostkey_accept, keys_authorize, keys_generate, 
                    lab_down, lab_power_cycle, lab_reset, lab_up, manifest, store_gc,
                    trust_add, trust_remove)

def _collection(name, tasks):
    """The tasks NAME.SUB: {sub: task}."""
    sub_ns = Collection(name)
    for sub, t in tasks.items():
        sub_ns.add_task(t, name=sub)
    return sub_ns


SUBCOMMANDS = [
    _collection("keys", {"generate": keys_generate, "authorize": keys_authorize}),
    _collection("trust", {"add": trust_add, "remove": trust_remove}),
    _collection("hostkey", {"accept": hostkey_accept}),
    _collection("store", {"gc": store_gc}),
    _collection("lab", {"up": lab_up, "down": lab_down, "reset": lab_reset,
                        "power-cycle": lab_power_cycle}),
    _collection("cache", {"push": cache_push, "verify": cache_verify}),
    _collection("bundle", {"export": bundle_export, "import": bundle_import}),
    _collection("secrets", {"rotate": secrets_rotate, "rotate-key": secrets_rotate_key}),
]

ns = Collection()
for t in (build, manifest, deploy, rollback, reboot, status, generations, bootstrap, demo,
          play, verify, plan, gc):
    ns.add_task(t)
ns.add_task(diff_generations, name="diff")
ns.add_task(hosts_task, name="hosts")
for sub in SUBCOMMANDS:
    ns.add_collection(sub)


def main():
    Program(namespace=ns, version=__version__, name="fruixops", binary="fruixops").run()


__all__ = ["ns", "main"]
