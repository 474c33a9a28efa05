"""Host configuration in the system closure: what an Ansible user writes with
``template``, ``copy``, ``sysrc``, ``user``, ``authorized_key``, ``sysctl``
and ``cron``, declared as inventory variables and built into the host's
system item, so that it is signed, diffed and rolled back with the system.

- ``declare``: the variables (``rc_conf``, ``rc_conf_d``, ``files``,
  ``users``, ``groups``, ``sysctl``, ``loader_tunables``, ``cron``,
  ``resolv_conf``, ``hosts``, ``timezone``) read and checked, with the
  inventory file and line of anything refused;
- ``templates``: Jinja2 templates rendered on the controller with the host's
  variables (StrictUndefined: an undefined variable is an error naming the
  template's file and line);
- ``ids``: uids and gids, assigned on the controller and kept in a ledger,
  so an account has the same number in every generation and on every host;
- ``render``: the declarations as the system item's ``config/`` tree (the
  managed files, the accounts, the services' restart keys) that the host's
  activation (``fruixops/host/config.sh``) applies;
- ``diff``: two systems' configurations compared, as ``inv plan`` and
  ``inv diff`` show them (unified diffs, ``--json``).

The reference is docs/configuration.md.
"""
