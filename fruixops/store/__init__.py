"""Content-addressed items and what proves them: the controller's local
store (``local``: store paths, items, their canonical archives, listings,
compressed forms and deltas), the archives themselves (``archive``), the
pinned FreeBSD sources they are built from (``sources``, ``distgen`` for the
lab's synthetic sets), signed manifests (``manifest``), Ed25519 signing keys
(``keys``) and signed trust changes (``trust``).

Imports: ``fruixops.errors`` and ``fruixops.inventory`` (a base's
declaration) only.
"""
