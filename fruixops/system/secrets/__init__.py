"""Secrets: values a host needs (TLS keys, passwords, tokens) that never
enter a store item, the cache or a bundle in the clear (docs/secrets.md).

- ``declare``: the inventory's ``secrets:`` as Secret records, and where
  each goes on the host (what the system item carries: never a value);
- ``sources``: reading a value from a file, a command or the environment,
  held no longer than a delivery needs it;
- ``seal``: encryption to a host's own X25519 key, and the signed delivery;
- ``hostkeys``: the hosts' secret public keys, recorded on the controller;
- ``deliver``: sending a delivery to a host (deploy, rotate), and sealing
  one into a bundle.

It may import the inventory, errors, bundle and receiver modules; nothing
upstream imports it but build (the system item), deploy, offline and the CLI.
"""

from fruixops.system.secrets.declare import DEFAULT_DIR, Secret, declared, paths, system_entry

__all__ = ["DEFAULT_DIR", "Secret", "declared", "paths", "system_entry"]
