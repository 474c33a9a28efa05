"""Changing hosts: bootstrap, plan and push (``push``: items, deltas, pulls
from the item cache), deploy with its checks and trial boots (``deploy``,
``checks``, ``boot``, ``bootloader``), switch and rollback (``switch``), fleet
runs and playbooks (``fleet``, ``playbook``, ``play``), plan/diff/gc
(``lifecycle``), the item cache and offline bundles (``cache``, ``offline``),
and what the person watching sees (``events``, ``display``, ``story``).

Imports: every package below it (``inventory``, ``store``, ``remote``,
``system``); ``fruixops.controller`` and ``fruixops.cli`` import it.
"""
