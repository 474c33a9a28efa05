"""Tasks that set things up: build, manifest, keys, bootstrap, trust,
host keys, the local store, the lab and its demo."""

import sys

from invoke import Exit

from fruixops.store import keys
from fruixops.errors import EXIT_FAILED
from fruixops.controller import Controller
from fruixops.cli.common import INVENTORY_HELP, _need_host, _usage, user_task


@user_task(help={"base": "base to build", "host": "also build this host's system",
                 "inventory": INVENTORY_HELP})
def build(c, base=None, host=None, inventory=None):
    """Build a base's items (and a host's system); print their store paths."""
    for path in Controller(inventory).build(base, host):
        print(path)


@user_task(help={"host": "host the manifest is for", "base": "base (default: the host's)",
                 "out": "directory to write manifest and manifest.sig into",
                 "key": "signing key (default: the inventory's)", "inventory": INVENTORY_HELP})
def manifest(c, host=None, base=None, out=None, key=None, inventory=None):
    """Build a host's closure and write its signed manifest to --out DIR."""
    if not host or not out:
        raise _usage("manifest needs --host HOST and --out DIR")
    m, mpath, spath = Controller(inventory, key=key).write_manifest(host, base, out)
    print(mpath)
    print(spath)


@user_task(name="generate", help={"name": "key name: writes keys/NAME.key and keys/NAME.pub",
                                  "dir": "directory (default: keys)",
                                  "passphrase": "encrypt the private key (prompted when "
                                                "given as '-')"})
def keys_generate(c, name=None, dir="keys", passphrase=None):
    """Make an Ed25519 signing key pair; the private key is never printed."""
    if not name:
        raise _usage("keys.generate needs --name NAME")
    if passphrase == "-":
        import getpass
        passphrase = getpass.getpass("passphrase: ")
    key_path, pub_path = keys.generate(dir, name, passphrase=passphrase)
    print(f"private key: {key_path} (mode 0600, git-ignored)")
    print(f"public key:  {pub_path}")


@user_task(help={"host": "host to bootstrap", "inventory": INVENTORY_HELP})
def bootstrap(c, host=None, inventory=None):
    """Install the receiver on a host and, on first contact, its trusted keys
    (to give fruixops a key that can only deploy: keys.authorize)."""
    from fruixops.rollout import bootstrap as bootstrap_mod
    from fruixops.rollout.deploy import connect
    _need_host(host, "bootstrap")
    ctl = Controller(inventory)
    hc = connect(ctl, ctl.inventory.host(host))
    from fruixops.rollout import boot
    try:
        out = bootstrap_mod.bootstrap(hc, ctl.trusted_keys())
        # What would keep the loader from booting a generation, said before
        # any deploy: a store it cannot reach, files that win over fruix.conf.
        warnings = boot.state(hc).warnings()
    finally:
        hc.close()
    for line in out.splitlines() + warnings:
        print(f"{host}: {line}")
    print(f"{host}: receiver {receiver_version()[:16]} installed")
    if not hc.access.restricted:
        print(f"{host}: fruixops logs in with a key that can run anything; "
              "`inv keys.authorize --host {host}` restricts one to the receiver "
              "(docs/access.md)".replace("{host}", host))


@user_task(name="authorize", help={
    "host": "host whose root account gets the restricted deploy key",
    "key": "the deploy key's OpenSSH public key (default: keys/deploy.pub)",
    "admin_user": "the administrator's account to do it with (root)",
    "admin_key": "the administrator's SSH key (default: agent and ~/.ssh keys)",
    "file": "authorized_keys file (default: /root/.ssh/authorized_keys)",
    "revoke": "an old deploy key (OpenSSH .pub) to remove: key rotation",
    "print_only": "print the authorized_keys line and sshd_config setting; contact no host",
    "inventory": INVENTORY_HELP})
def keys_authorize(c, host=None, key="keys/deploy.pub", admin_user="root", admin_key=None,
                   file="/root/.ssh/authorized_keys", revoke=None, print_only=False,
                   inventory=None):
    """Restrict a deploy key to the fruixops receiver on a host (as its administrator)."""
    from pathlib import Path
    from fruixops.remote import access
    from fruixops.rollout import bootstrap as bootstrap_mod
    from fruixops.errors import UserError
    _need_host(host, "keys.authorize")

    def key_line(path):
        try:
            return access.public_key_line(Path(path).read_text(), str(path))
        except (FileNotFoundError, UnicodeDecodeError):
            raise UserError("not a readable OpenSSH public key", where=str(path)) from None

    line = key_line(key)
    if print_only:
        print(access.authorized_keys_entry(line))
        print("# sshd_config: PermitRootLogin forced-commands-only")
        return
    old = [key_line(revoke)] if revoke else []
    ctl = Controller(inventory)
    hc = bootstrap_mod.admin_connection(ctl, ctl.inventory.host(host), admin_user, admin_key)
    try:
        out = bootstrap_mod.authorize_deploy_key(hc, ctl.trusted_keys(), line, file, old)
    finally:
        hc.close()
    for ln in out.splitlines():
        print(f"{host}: {ln}")
    print(f"{host}: now set sshd_config PermitRootLogin forced-commands-only and "
          "restricted_key: true in the inventory")


def receiver_version():
    from fruixops.remote import receiver
    return receiver.version()


@user_task(name="add", help={"host": "host", "key": "public key file to trust (NAME.pub)",
                             "signing_key": "key that signs the change, one the host already "
                                            "trusts (default: the inventory's signing_key)",
                             "inventory": INVENTORY_HELP})
def trust_add(c, host=None, key=None, signing_key=None, inventory=None):
    """Make a host trust one more signing key (key rotation: add, deploy, remove)."""
    from pathlib import Path
    from fruixops.rollout import bootstrap as bootstrap_mod
    from fruixops.rollout.deploy import connect
    _need_host(host, "trust.add")
    if not key:
        raise _usage("trust.add needs --key NAME.pub")
    keys.load_public(key)
    ctl = Controller(inventory, key=signing_key)
    hc = connect(ctl, ctl.inventory.host(host))
    try:
        print(f"{host}: " + bootstrap_mod.trust_add(
            hc, keys.key_name(key), Path(key).read_bytes(), ctl.signing_key, ctl.signer)
            .strip().replace("\n", f"\n{host}: "))
    finally:
        hc.close()


@user_task(name="remove", help={"host": "host", "name": "key name",
                                "signing_key": "key that signs the change, one the host "
                                               "trusts (default: the inventory's signing_key)",
                                "inventory": INVENTORY_HELP})
def trust_remove(c, host=None, name=None, signing_key=None, inventory=None):
    """Make a host stop trusting a signing key (never its last one)."""
    from fruixops.rollout import bootstrap as bootstrap_mod
    from fruixops.rollout.deploy import connect
    _need_host(host, "trust.remove")
    if not name:
        raise _usage("trust.remove needs --name NAME")
    ctl = Controller(inventory, key=signing_key)
    hc = connect(ctl, ctl.inventory.host(host))
    try:
        print(f"{host}: " + bootstrap_mod.trust_remove(hc, name, ctl.signing_key, ctl.signer)
              .strip().replace("\n", f"\n{host}: "))
    finally:
        hc.close()


@user_task(name="accept", help={"host": "host whose SSH host key to accept",
                                "fingerprint": "accept only this key (SHA256:...), checked "
                                               "out of band",
                                "inventory": INVENTORY_HELP})
def hostkey_accept(c, host=None, fingerprint=None, inventory=None):
    """Record a host's new SSH host key in the inventory's known_hosts, explicitly."""
    from pathlib import Path
    from fruixops.remote import hostkeys
    _need_host(host, "hostkey.accept")
    ctl = Controller(inventory)
    h = ctl.inventory.host(host)
    entry, key = hostkeys.presented_host_key(h)
    fp = hostkeys.fingerprint(key)
    print(f"{host}: {entry} presents {key.get_name()} {fp}")
    if fingerprint:
        if fingerprint != fp:
            raise _usage(f"{host}: presented key {fp} is not the expected {fingerprint}; "
                         "not recorded")
    elif sys.stdin.isatty():
        if input("accept this key? [y/N] ").strip().lower() not in ("y", "yes"):
            raise _usage("not accepted")
    else:
        raise _usage("give --fingerprint SHA256:... (checked out of band) to accept a host "
                     "key without a terminal")
    target = ctl.inventory.settings.known_hosts or Path("~/.ssh/known_hosts")
    hostkeys.record_host_key(target, entry, key)
    print(f"{host}: recorded in {target}")


@user_task(name="gc", help={"keep": "also keep the N most recently built other items",
                            "dry_run": "list what would go", "inventory": INVENTORY_HELP})
def store_gc(c, keep=0, dry_run=False, inventory=None):
    """Collect the controller's local store: keep what the inventories' current
    declarations build (and the --keep N most recent others)."""
    from fruixops.rollout import lifecycle
    if not str(keep).isdigit():
        raise _usage("store.gc --keep takes a number")
    ctl = Controller(inventory)
    deleted, freed, notes = lifecycle.store_gc(ctl, int(keep), dry_run=dry_run)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for p, b in deleted:
        print(f"{'would delete' if dry_run else 'deleted'} {p} {b}")
    print(f"{'would free' if dry_run else 'freed'} {freed} bytes ({freed / 2**20:.1f} MiB) "
          f"in {ctl.store_root}")


def _lab(inventory, host=None):
    from fruixops import lab as lab_mod
    inv = Controller(inventory).inventory
    hosts = [inv.host(host)] if host else list(inv.hosts.values())
    return lab_mod.Lab(inv), hosts


@user_task(name="up", help={"inventory": INVENTORY_HELP, "host": "only this host",
                            "bare": "leave new hosts bare instead of installing their base"})
def lab_up(c, inventory=None, host=None, bare=False):
    """Start the lab: one sshd per host in its own namespaces (needs root).

    A new (bare) host is installed with its inventory base as generation 1,
    like a machine delivered with Fruix on it, unless --bare is given."""
    from fruixops.lab.webcache import WebCache
    lab, hosts = _lab(inventory, host)
    lab.up(hosts)
    cache = WebCache.of(lab)
    ctl = Controller(inventory)
    if cache:
        cache.up()
        print(f"cache: nginx on 127.0.0.1:{cache.port} serving {cache.root}")
        new = [h for h in hosts if lab.is_bare(h.name)]
        if new and not bare:
            # New hosts pull their base from the cache, as a fleet would.
            from fruixops.rollout import cache as cache_mod
            cache_mod.push(ctl.builder.store, cache_mod.closure_items(ctl, new),
                           cache_mod.target_for(ctl.inventory.settings.cache))
    installed = {} if bare else {r["host"]: r for r in lab.install(ctl, hosts)}
    for h in hosts:
        how = (f", installed {installed[h.name]['base']} as generation "
               f"{installed[h.name]['generation']}" if h.name in installed else "")
        print(f"{h.name}: up on {h.var('ssh_host')}:{h.var('ssh_port')} "
              f"(disk {lab.disk(h.name)}{how})")


@user_task(name="down", help={"inventory": INVENTORY_HELP, "host": "only this host"})
def lab_down(c, inventory=None, host=None):
    """Stop the lab's hosts (their disks are kept) and, unless --host is
    given, its cache server."""
    from fruixops.lab.webcache import WebCache
    lab, hosts = _lab(inventory, host)
    lab.down(hosts)
    cache = WebCache.of(lab)
    if cache and not host:
        cache.down()
    print(f"lab down ({len(hosts)} hosts)")


@user_task(name="reset", help={"inventory": INVENTORY_HELP, "host": "only this host"})
def lab_reset(c, inventory=None, host=None):
    """Stop the lab's hosts and wipe their disks."""
    lab, hosts = _lab(inventory, host)
    lab.reset(hosts)
    print(f"lab reset ({len(hosts)} hosts; start again with inv lab.up)")


@user_task(name="power-cycle", help={"inventory": INVENTORY_HELP, "host": "host to cycle"})
def lab_power_cycle(c, inventory=None, host=None):
    """Cut a lab host's power and switch it on again (no clean shutdown)."""
    _need_host(host, "lab.power-cycle")
    lab, hosts = _lab(inventory, host)
    lab.power_cycle(host)
    print(f"{host}: power-cycled")


@user_task(help={"inventory": INVENTORY_HELP, "host": "lab host to run it on"})
def demo(c, inventory=None, host="web1"):
    """The Fruix phase 15.2 story on a lab host: deploy, boot, roll forward, roll back."""
    from fruixops.rollout import story
    ok = story.run(Controller(inventory), host, out=print)
    if not ok:
        raise Exit(code=EXIT_FAILED)
