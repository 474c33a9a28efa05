"""The services a Fruix system's shepherd supervises.

``catalogue`` knows the common FreeBSD services as a supervisor must run
them: in the foreground (``sshd -D``, ``ntpd -n``, ``nginx -g 'daemon
off;'``), with their configuration paths, the rc.d script that would
otherwise start them and what they require. ``declare`` reads an inventory's
``services:`` (catalogue names, or the operator's own services) into
``Service`` records, refusing what it does not know with the inventory file
and line; ``shepherd`` renders them as the system's shepherd configuration
and its rc.conf lines.

Imports: the standard library and ``fruixops.errors`` only; the system build
(``fruixops.system.build``) imports this package, never the other way.
"""
