"""A host's configuration as its system item's ``config/`` tree.

What the host's activation (fruixops/host/config.sh) reads, each a text file
of tab-separated lines (paths and names are plain characters, checked in
``declare``):

    config/files      file PATH MODE OWNER GROUP SHA256 VALIDATE  (VALIDATE: - for none)
                      dir  PATH MODE OWNER GROUP
                      link PATH TARGET
    config/root/PATH  each managed file's content
    config/accounts   group NAME GID
                      user  NAME UID GROUP HOME SHELL COMMENT
                      member GROUP USER      (a managed user in a group it does not manage)
    config/services   NAME KEY   the restart key of each service: a digest of its
                      command line, its rc variables and the files it reads
    config/loader-tunables   name="value" lines, for the generation's fruix.conf

rc_conf: variables go into the system's own etc/rc.conf (FreeBSD's rc reads it
last), beside the lines fruixops writes for the services.
"""

import hashlib
import json
from collections import ChainMap
from dataclasses import dataclass, field

from fruixops.errors import UserError
from fruixops.system.config import declare, ids, templates

# What checks a service's configuration before it replaces the running one
# (Ansible's validate, %s: the new file, staged beside the old).
VALIDATORS = {
    "/etc/ssh/sshd_config": "/usr/sbin/sshd -t -f %s",
    "/usr/local/etc/nginx/nginx.conf": "/usr/local/sbin/nginx -t -c %s",
    "/usr/local/etc/unbound/unbound.conf": "/usr/local/sbin/unbound-checkconf %s",
    "/var/unbound/unbound.conf": "/usr/sbin/local-unbound-checkconf %s",
    "/usr/local/etc/haproxy.conf": "/usr/local/sbin/haproxy -c -f %s",
}
CRON_PATH = "/etc/cron.d/fruixops-"
SSH_DIR = ".ssh"


@dataclass
class Managed:
    path: str
    content: bytes
    mode: int
    owner: str = "root"
    group: str = "wheel"
    notify: tuple = ()
    validate: str | None = None
    what: str = ""             # where it comes from, for people (plan, docs)

    @property
    def sha256(self):
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Rendered:
    rc_conf: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)        # path -> Managed
    dirs: dict = field(default_factory=dict)         # path -> (mode, owner, group)
    links: dict = field(default_factory=dict)        # path -> target
    accounts: list = field(default_factory=list)     # lines
    services: dict = field(default_factory=dict)     # name -> restart key
    loader_tunables: dict = field(default_factory=dict)

    def canonical(self):
        """Everything that changes what activation does: part of the system's
        declaration, so that any change gives a new closure path."""
        return {"rc_conf": self.rc_conf,
                "files": {p: [m.sha256, m.mode, m.owner, m.group, list(m.notify), m.validate]
                          for p, m in sorted(self.files.items())},
                "dirs": {p: list(v) for p, v in sorted(self.dirs.items())},
                "links": dict(sorted(self.links.items())),
                "accounts": self.accounts, "services": dict(sorted(self.services.items())),
                "loader_tunables": self.loader_tunables}

    def entries(self):
        """The system item's config/ entries: (relpath, kind, payload)."""
        lines = []
        for p, m in sorted(self.files.items()):
            lines.append("\t".join(["file", p, f"{m.mode:04o}", m.owner, m.group, m.sha256,
                                    m.validate or "-"]))
        for p, (mode, owner, group) in sorted(self.dirs.items()):
            lines.append("\t".join(["dir", p, f"{mode:04o}", owner, group]))
        for p, target in sorted(self.links.items()):
            lines.append("\t".join(["link", p, target]))
        out = [("config/files", "file", (text(lines), False)),
               ("config/accounts", "file", (text(self.accounts), False)),
               ("config/services", "file",
                (text(f"{n}\t{k}" for n, k in sorted(self.services.items())), False)),
               ("config/loader-tunables", "file",
                (text(f'{n}="{v}"' for n, v in sorted(self.loader_tunables.items())), False))]
        for p, m in sorted(self.files.items()):
            out.append((f"config/root{p}", "file", (m.content, False)))
        return out


def text(lines):
    lines = list(lines)
    return ("\n".join(lines) + "\n").encode() if lines else b""


def render(host, inventory, services, secret_paths=None, ledger=None):
    """*host*'s configuration, rendered (templates, accounts, generated files)."""
    lab = bool(inventory.settings.lab) if inventory is not None else False
    c = declare.config_of(host, lab=lab)
    r = Rendered(rc_conf=dict(c.rc_conf), loader_tunables=dict(c.loader_tunables))
    context = template_context(host, inventory, secret_paths or {})

    def add(m, where):
        if m.path in r.files:
            raise UserError(f"{m.path} is managed twice ({r.files[m.path].what} and {m.what})",
                            where=where)
        r.files[m.path] = m

    for f in c.files:
        content = templates.render(f, context)
        add(Managed(f.path, content, f.mode, f.owner, f.group, f.notify,
                    f.validate or VALIDATORS.get(f.path), what=f"files: {f.kind} {f.value}"
                    if f.kind != "content" else "files: content"), f.where)
    where = lambda name: host.var_where.get(name, host.where)  # noqa: E731
    by_rc = {s.rc or s.name: s.name for s in services}
    for svc, variables in c.rc_conf_d.items():
        add(Managed(f"/etc/rc.conf.d/{svc}", rc_lines(variables, host.name, "rc_conf_d"),
                    0o644, notify=(by_rc[svc],) if svc in by_rc else (),
                    what=f"rc_conf_d: {svc}"), where("rc_conf_d"))
    if c.sysctl:
        add(Managed("/etc/sysctl.conf", _generated(host, "sysctl", [
            f"{n}={v}" for n, v in c.sysctl.items()]), 0o644, what="sysctl"), where("sysctl"))
    for job in c.cron:
        add(Managed(CRON_PATH + job.name, _generated(host, f"cron {job.name}", [
            "SHELL=/bin/sh", "PATH=/etc:/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin:"
            "/usr/local/sbin", f"{job.schedule}\t{job.user}\t{job.job}"]), 0o644,
            what=f"cron: {job.name}"), where("cron"))
    if c.resolv_conf is not None:
        rc = c.resolv_conf
        lines = ([f"domain {rc['domain']}"] if rc["domain"] else []) + \
            ([f"search {' '.join(rc['search'])}"] if rc["search"] else []) + \
            [f"nameserver {n}" for n in rc["nameservers"]] + \
            ([f"options {' '.join(rc['options'])}"] if rc["options"] else [])
        add(Managed("/etc/resolv.conf", _generated(host, "resolv_conf", lines), 0o644,
                    what="resolv_conf"), where("resolv_conf"))
    if c.hosts is not None:
        names = {a for a, _ in c.hosts}
        lines = [] if {"::1", "127.0.0.1"} & names else [
            "::1\t\t\tlocalhost localhost.my.domain",
            "127.0.0.1\t\tlocalhost localhost.my.domain"]
        lines += [f"{a}\t\t{' '.join(n)}" for a, n in c.hosts]
        add(Managed("/etc/hosts", _generated(host, "hosts", lines), 0o644, what="hosts"),
            where("hosts"))
    if c.timezone:
        if "/etc/localtime" in r.files:
            raise UserError("/etc/localtime is managed twice (files and timezone)",
                            where=where("timezone"))
        r.links["/etc/localtime"] = f"/usr/share/zoneinfo/{c.timezone}"
    _accounts(c, r, host, inventory, ledger, add)
    _check_rc_conf(r.rc_conf, services, where("rc_conf"))
    for m in r.files.values():
        for name in m.notify:
            if name not in {s.name for s in services}:
                raise UserError(f"{m.path}: notify names {name!r}, which this host does not "
                                "run as a service", where=where("files"))
    r.services = restart_keys(services, r)
    return r


def _generated(host, what, lines):
    return text([f"# Generated by fruixops for host {host.name} ({what}); edits here are "
                 "kept aside at the next activation."] + list(lines))


def rc_lines(variables, host, what):
    return text([f"# Generated by fruixops for host {host} ({what})."] +
                [f'{n}="{rc_quote(v)}"' for n, v in variables.items()])


def rc_quote(value):
    """A value inside rc.conf's double quotes (sh syntax: rc sources it)."""
    return "".join("\\" + ch if ch in '"\\$`' else ch for ch in value)


def _check_rc_conf(rc_conf, services, where):
    supervised = {s.rc for s in services if s.rc}
    for name, value in rc_conf.items():
        if name.endswith("_enable") and name[:-len("_enable")] in supervised and \
                value.upper() in ("YES", "TRUE", "ON", "1"):
            raise UserError(f"rc_conf.{name}: shepherd supervises {name[:-len('_enable')]}; rc "
                            "must not start it too", where=where)
        if name == "hostname":
            raise UserError("rc_conf.hostname: the host's name is its inventory name",
                            where=where)


def _accounts(c, r, host, inventory, ledger, add):
    if not c.users and not c.groups:
        return
    if ledger is None:
        ledger = ids.Ledger(ids_path(inventory))
    groups = {}
    for g in c.groups:
        groups[g.name] = ledger.assign("groups", g.name, g.gid, ())
    users = {}
    for u in c.users:
        users[u.name] = ledger.assign("users", u.name, u.uid, ())
    for u in c.users:
        if u.group is None and u.name not in groups:
            groups[u.name] = ledger.assign("groups", u.name, None, ()) \
                if u.name in ledger.data["groups"] or users[u.name] in \
                ledger.data["groups"].values() else \
                ledger.assign("groups", u.name, users[u.name], ())
    ledger.save()
    _unique_numbers(users, "uid", host)
    _unique_numbers(groups, "gid", host)
    members = {g: set() for g in groups}
    for g in c.groups:
        members[g.name] |= set(g.members)
    outside = set()
    for u in c.users:
        for g in u.groups:
            if g in members:
                members[g].add(u.name)
            else:
                outside.add((g, u.name))
    lines = [f"group\t{g}\t{gid}\t{','.join(sorted(members[g]))}"
             for g, gid in sorted(groups.items())]
    for u in c.users:
        primary = u.group or u.name
        lines.append("\t".join(["user", u.name, str(users[u.name]), primary, u.home, u.shell,
                                u.comment]))
        if u.create_home or u.authorized_keys:
            r.dirs[u.home] = (0o755, u.name, primary)
        if u.authorized_keys:
            r.dirs[f"{u.home}/{SSH_DIR}"] = (0o700, u.name, primary)
            add(Managed(f"{u.home}/{SSH_DIR}/authorized_keys", text(u.authorized_keys), 0o600,
                        u.name, primary, what=f"users: {u.name}'s authorized_keys"), u.where)
    lines += [f"member\t{g}\t{user}" for g, user in sorted(outside)]
    r.accounts = lines


def _unique_numbers(book, what, host):
    seen = {}
    for name, n in book.items():
        if n in seen:
            raise UserError(f"host {host.name}: {seen[n]} and {name} have the same {what} {n}",
                            where=host.where)
        seen[n] = name


def ids_path(inventory):
    from pathlib import Path
    s = inventory.settings if inventory is not None else None
    if s is not None and s.ids:
        return s.ids
    return Path(s.store if s is not None and s.store else ".frx") / "ids.json"


def template_context(host, inventory, secret_paths):
    """What a template sees: the host's variables as Ansible merges them, each
    rendered when first read (templated values included), Ansible's magic
    variables (inventory_hostname, group_names, groups...), ansible_host,
    ``hostvars`` (the other hosts' variables as written), and
    ``secrets.NAME.path`` for each declared secret (its path only: a value
    never enters the store)."""
    extra = {"ansible_host": host.var("ssh_host", host.name),
             "secrets": {n: {"path": p} for n, p in sorted(secret_paths.items())}}
    if inventory is not None:
        extra["hostvars"] = {n: dict(h.ansible_vars, inventory_hostname=n)
                             for n, h in inventory.hosts.items()}
    scope = getattr(host.vars, "scope", None)
    if scope is None:          # a Host made by hand (tests): plain values
        scope = dict(host.ansible_vars, **dict(host.vars), inventory_hostname=host.name,
                     group_names=list(host.groups))
    # *extra* over the host's variables, each rendered only when read.
    return ChainMap(extra, scope)


def restart_keys(services, r):
    """Each service's restart key: its command line and rc variables, and the
    files that notify it or that it reads. A live switch restarts exactly the
    services whose key changed."""
    keys = {}
    for s in services:
        rc = s.rc or s.name
        prefix = f"{rc}_"
        files = {p: m.sha256 for p, m in r.files.items()
                 if s.name in m.notify or p in s.config
                 or any(p.startswith(c.rstrip("/") + "/") for c in s.config)}
        blob = {"command": list(s.command), "user": s.user, "group": s.group,
                "environment": list(s.environment), "requires": list(s.requires),
                "rc": {n: v for n, v in r.rc_conf.items() if n.startswith(prefix)},
                "files": files}
        keys[s.name] = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:32]
    return keys
