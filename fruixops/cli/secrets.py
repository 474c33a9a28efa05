"""Tasks for secrets (docs/secrets.md): deliver them again without a new
generation, and give a host a new secret key."""

from fruixops.controller import Controller
from fruixops.cli.common import INVENTORY_HELP, _need_host, user_task


@user_task(name="rotate", iterable=["name"],
           help={"host": "host whose secrets to deliver again",
                 "name": "only this secret (may be given several times)",
                 "inventory": INVENTORY_HELP})
def secrets_rotate(c, host=None, name=None, inventory=None):
    """Read the host's secrets from their sources again, seal them to its key and
    deliver them: the running system's files change, no generation is made."""
    from fruixops.system.secrets import deliver
    _need_host(host, "secrets.rotate")
    ctl = Controller(inventory)
    for line in deliver.rotate(ctl, host, names=name or None):
        print(line)


@user_task(name="rotate-key", help={"host": "host that makes a new secret key pair",
                                    "inventory": INVENTORY_HELP})
def secrets_rotate_key(c, host=None, inventory=None):
    """The host makes a new secret key pair (the old private key is kept while an
    older generation's sealed secrets need it); its public key is recorded on the
    controller and every secret is delivered to it."""
    from fruixops.system.secrets import deliver
    _need_host(host, "secrets.rotate-key")
    ctl = Controller(inventory)
    for line in deliver.rotate(ctl, host, new_key=True):
        print(line)
