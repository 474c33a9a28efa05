"""The lab's power switch, as a command the controller runs
(``power_cycle_command`` of the lab inventory):

    python -m fruixops.lab.power INVENTORY HOST
"""

import sys

from fruixops.inventory import model as inventory
from fruixops.lab import Lab

if __name__ == "__main__":
    inv = inventory.load(sys.argv[1])
    Lab(inv).power_cycle(inv.host(sys.argv[2]).name)
    print(f"{sys.argv[2]}: power-cycled")
