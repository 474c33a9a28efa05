"""`inv hosts`: what the inventory holds, without contacting any host."""

from fruixops.inventory.model import load
from fruixops.inventory import hostlist
from fruixops.cli.common import INVENTORY_HELP, LIMIT_HELP, _print_json, user_task


@user_task(help={"limit": LIMIT_HELP, "inventory": INVENTORY_HELP,
                 "graph": "the group tree (as ansible-inventory --graph)",
                 "vars": "each host's merged variables (as ansible-inventory --host)",
                 "json": "groups, hosts and variables as ansible-inventory --list prints them"})
def hosts(c, limit=None, graph=False, vars=False, json=False, inventory=None):
    """List the hosts a pattern selects, the group tree, each host's variables."""
    inv = load(inventory)
    chosen = hostlist.selected(inv, limit)
    if json:
        _print_json(hostlist.listing(inv, chosen, with_vars=True))
    elif graph:
        print("\n".join(hostlist.graph(inv, chosen, with_vars=vars)))
    else:
        print("\n".join(hostlist.host_lines(chosen, with_vars=vars)))
