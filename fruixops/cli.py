"""The command line: Invoke tasks that parse arguments and call the library.

``tasks.py`` at the project root re-exports this namespace for ``inv``; the
``fruixops`` console script runs the same tasks. Errors a user can cause print
one line and exit with the status documented in the README.
"""

import functools
import json as jsonlib
import sys

from invoke import Collection, Exit, Program, task

from . import __version__, keys
from .controller import Controller
from .errors import EXIT_FAILED, FruixopsError


def user_task(*args, **kwargs):
    """@task without auto short flags (so --host never becomes -h), turning
    FruixopsError into one line on stderr and its exit status."""
    kwargs.setdefault("auto_shortflags", False)

    def wrap(fn):
        @functools.wraps(fn)
        def run(c, *a, **kw):
            try:
                return fn(c, *a, **kw)
            except FruixopsError as exc:
                print(f"fruixops: {exc}", file=sys.stderr)
                raise Exit(code=exc.exit_status) from None
            except KeyboardInterrupt:
                print("fruixops: interrupted", file=sys.stderr)
                raise Exit(code=130) from None
        return task(*args, **kwargs)(run)
    return wrap


INVENTORY_HELP = "inventory file (default: $FRUIXOPS_INVENTORY or inventories/lab.yaml)"


@user_task(help={"base": "base to build", "host": "also build this host's system",
                 "inventory": INVENTORY_HELP})
def build(c, base=None, host=None, inventory=None):
    """Build a base's items (and a host's system); print their store paths."""
    for path in Controller(inventory).build(base, host):
        print(path)


@user_task(help={"host": "host the manifest is for", "base": "base (default: the host's)",
                 "out": "directory to write manifest and manifest.sig into",
                 "key": "signing key (default: the inventory's)", "inventory": INVENTORY_HELP})
def manifest(c, host=None, base=None, out=None, key=None, inventory=None):
    """Build a host's closure and write its signed manifest to --out DIR."""
    if not host or not out:
        raise _usage("manifest needs --host HOST and --out DIR")
    m, mpath, spath = Controller(inventory, key=key).write_manifest(host, base, out)
    print(mpath)
    print(spath)


@user_task(name="generate", help={"name": "key name: writes keys/NAME.key and keys/NAME.pub",
                                  "dir": "directory (default: keys)",
                                  "passphrase": "encrypt the private key (prompted when "
                                                "given as '-')"})
def keys_generate(c, name=None, dir="keys", passphrase=None):
    """Make an Ed25519 signing key pair; the private key is never printed."""
    if not name:
        raise _usage("keys.generate needs --name NAME")
    if passphrase == "-":
        import getpass
        passphrase = getpass.getpass("passphrase: ")
    key_path, pub_path = keys.generate(dir, name, passphrase=passphrase)
    print(f"private key: {key_path} (mode 0600, git-ignored)")
    print(f"public key:  {pub_path}")


def _usage(message):
    from .errors import UserError
    return UserError(message)


def _print_json(obj):
    print(jsonlib.dumps(obj, indent=2, sort_keys=True))


keys_ns = Collection("keys")
keys_ns.add_task(keys_generate, name="generate")

ns = Collection()
for t in (build, manifest):
    ns.add_task(t)
ns.add_collection(keys_ns)


def main():
    Program(namespace=ns, version=__version__, name="fruixops", binary="fruixops").run()


__all__ = ["ns", "main", "EXIT_FAILED"]
