"""What the operator declares: inventories read as ansible-core reads them
(YAML and INI files and directories, ``group_vars``/``host_vars``, host
ranges), each host's variables merged and rendered as Ansible renders them
(Jinja2), ``--limit`` patterns, the fleet's own settings and its base
declarations.

``model`` is the entry point (``load``, ``Inventory``, ``Host``); ``files``,
``ini``, ``yamlfile``, ``groups`` and ``addresses`` read the sources;
``hostvars``, ``templating`` and ``template_plugins`` give a host its
variables; ``limit`` and ``hostlist`` select and show hosts; ``settings``
reads the ``fruixops:`` block.

Imports: the standard library, ruamel.yaml, jinja2 and ``fruixops.errors``
only; every other package may import this one.
"""
