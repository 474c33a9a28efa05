"""The system item a host boots: its build (``build``: the base's kernel,
bootloader and runtime items, and ``fruix-system-HOST`` with its boot
hand-over), the services shepherd supervises (``services``), the host's
configuration (``config``: files from templates, rc.conf, accounts, sysctls;
the live switch) and its secrets (``secrets``: sealed to the host, never in
the store).

Imports: ``fruixops.errors``, ``fruixops.inventory``, ``fruixops.store`` and
``fruixops.remote`` (a secret's delivery, a configuration's activation).
"""
