"""Talking to a host: the SSH connection with its limits and host-key checks
(``connection``, ``hostkeys``), how fruixops reaches the receiver (``access``:
root, a restricted key, doas/sudo), the receiver program as the controller
sees it (``receiver``), the bundles handed to it (``bundle``), and what the
host answers, treated as hostile (``hostreply``, ``hoststate``,
``printable``).

Imports: ``fruixops.errors``, ``fruixops.inventory`` and ``fruixops.store``.
"""
