"""A host's configuration variables, read and checked.

Everything refused here is refused when the inventory is used (plan, build,
deploy), with the file and line of the variable, before anything is built:

    rc_conf:         {sshd_flags: "", ifconfig_em0: "inet 10.0.0.5/24"}
    rc_conf_d:       {nginx: {nginx_profiles: "a b"}}     # /etc/rc.conf.d/nginx
    files:
      /usr/local/etc/nginx/nginx.conf:
        template: nginx.conf.j2          # templates/ beside the inventory
        mode: "0644"                     # owner root, group wheel by default
        notify: [nginx]                  # restarted when the file changes
        validate: "/usr/local/sbin/nginx -t -c %s"
      /etc/motd: {content: "Welcome\\n"}
      /etc/periodic.conf.local: {src: periodic.conf}   # files/ beside it
    users:  [{name: alice, groups: [wheel], authorized_keys: ["ssh-ed25519 ..."]}]
    groups: [{name: deployers}]
    sysctl:          {kern.ipc.somaxconn: 1024}           # /etc/sysctl.conf
    loader_tunables: {kern.ipc.nmbclusters: 262144}       # the generation's fruix.conf
    cron:            {backup: {minute: 5, hour: 3, job: /usr/local/bin/backup}}
    resolv_conf:     {nameservers: [10.0.0.2], search: [example.org]}
    hosts:           {10.0.0.2: [ns1, ns1.example.org]}
    timezone:        Europe/Paris

Values that look like private keys are refused: secrets have their own
declarations (``secrets:``), which never put a value in the store.
"""

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from fruixops.errors import UserError

VARIABLES = ("rc_conf", "rc_conf_d", "files", "users", "groups", "sysctl", "loader_tunables",
             "cron", "resolv_conf", "hosts", "timezone")

# What a managed path may be: absolute, plain characters (the host's
# activation reads its lists with the shell), no . or .. components.
PATH = re.compile(r"^(/[A-Za-z0-9_@+,=:-][A-Za-z0-9._@+,=:-]*)+$")
# Paths activation never writes: the store, fruixops's own state, the loader's
# files, and the account databases (users: and groups: manage those).
FORBIDDEN = ("/frx", "/var/lib/fruix", "/boot", "/run", "/var/run", "/dev", "/proc",
             "/etc/master.passwd", "/etc/passwd", "/etc/pwd.db", "/etc/spwd.db", "/etc/group",
             "/etc/rc.conf")
RC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SYSCTL_NAME = re.compile(r"^[A-Za-z0-9_%-]+(\.[A-Za-z0-9_%-]+)+$")
TUNABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
# A value the host's files can carry on one line: no control characters.
ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f]*$")
# Loader variables fruixops itself writes, or that decide what boots.
RESERVED_TUNABLES = ("kernel", "init_exec", "init_path", "bootfile", "module_path",
                     "loader_conf_files", "loader_conf_dirs", "nextboot_conf", "nextboot_enable",
                     "currdev", "rootdev", "vfs.root.mountfrom", "kernels", "kernel_options")
PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File")
CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")
CRON_SPECIAL = ("reboot", "yearly", "annually", "monthly", "weekly", "daily", "midnight",
                "hourly", "every_minute", "every_second")
SHELLS = re.compile(r"^/[A-Za-z0-9._/-]+$")
# Where FreeBSD keeps time zones (tzsetup(8) links /etc/localtime there).
ZONEINFO = Path("/usr/share/zoneinfo")
TZ_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
# The lab gives a host its own copies of these trees only (lab/boot.sh): a
# lab host's activation must never write the machine's own files.
LAB_TREES = ("/etc/", "/usr/local/etc/", "/home/", "/root/")


@dataclass(frozen=True)
class FileDecl:
    path: str
    kind: str            # "template", "src" or "content"
    value: str           # the template's or src's name, or the content
    mode: int
    owner: str
    group: str
    notify: tuple
    validate: str | None
    where: str
    base_dir: str        # where the declaring file lives (templates/, files/ beside it)


@dataclass(frozen=True)
class UserDecl:
    name: str
    uid: int | None
    group: str | None     # primary group; None: its own, of the same name
    groups: tuple         # supplementary groups
    home: str
    shell: str
    comment: str
    authorized_keys: tuple
    create_home: bool
    where: str


@dataclass(frozen=True)
class GroupDecl:
    name: str
    gid: int | None
    members: tuple
    where: str


@dataclass(frozen=True)
class CronDecl:
    name: str
    schedule: str         # "m h dom mon dow" or "@daily"
    user: str
    job: str
    where: str


@dataclass
class HostConfig:
    rc_conf: dict = field(default_factory=dict)
    rc_conf_d: dict = field(default_factory=dict)      # service -> {var: value}
    files: list = field(default_factory=list)
    users: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    sysctl: dict = field(default_factory=dict)
    loader_tunables: dict = field(default_factory=dict)
    cron: list = field(default_factory=list)
    resolv_conf: dict | None = None
    hosts: list | None = None                           # [(address, (names...))]
    timezone: str | None = None


def config_of(host, lab=False):
    """*host*'s configuration variables, checked (UserError with the file and
    line of the first thing refused)."""
    c = HostConfig()
    where = lambda name: host.var_where.get(name, host.where)  # noqa: E731
    if host.var("rc_conf") is not None:
        c.rc_conf = _rc_vars(host.var("rc_conf"), "rc_conf", where("rc_conf"))
    if host.var("rc_conf_d") is not None:
        raw = _mapping(host.var("rc_conf_d"), "rc_conf_d", where("rc_conf_d"))
        for svc in sorted(raw, key=str):
            if not isinstance(svc, str) or not SERVICE_NAME.match(svc):
                raise UserError(f"rc_conf_d: {svc!r} is not a service name (a-z, 0-9, _ -)",
                                where=where("rc_conf_d"))
            c.rc_conf_d[svc] = _rc_vars(raw[svc], f"rc_conf_d.{svc}", where("rc_conf_d"))
    if host.var("files") is not None:
        raw = _mapping(host.var("files"), "files", where("files"))
        c.files = [_file(path, raw[path], where("files"), lab) for path in sorted(raw, key=str)]
    if host.var("groups") is not None:
        c.groups = [_group(g, where("groups")) for g in _list(host.var("groups"), "groups",
                                                               where("groups"))]
    if host.var("users") is not None:
        c.users = [_user(u, where("users"), lab) for u in _list(host.var("users"), "users",
                                                                where("users"))]
    _unique([g.name for g in c.groups], "group", where("groups"))
    _unique([u.name for u in c.users], "user", where("users"))
    if host.var("sysctl") is not None:
        c.sysctl = _named_values(host.var("sysctl"), "sysctl", SYSCTL_NAME, where("sysctl"))
    if host.var("loader_tunables") is not None:
        c.loader_tunables = _named_values(host.var("loader_tunables"), "loader_tunables",
                                          TUNABLE_NAME, where("loader_tunables"))
        for name in c.loader_tunables:
            if name in RESERVED_TUNABLES or name.startswith(("fruix.", "nextboot")):
                raise UserError(f"loader_tunables: {name} is one fruixops sets itself (it "
                                "decides what boots)", where=where("loader_tunables"))
            if any(ch in c.loader_tunables[name] for ch in '"\\$'):
                raise UserError(f"loader_tunables: {name}: a loader value cannot hold \", \\ "
                                "or $ (the loader expands them)",
                                where=where("loader_tunables"))
    if host.var("cron") is not None:
        raw = _mapping(host.var("cron"), "cron", where("cron"))
        c.cron = [_cron(name, raw[name], where("cron")) for name in sorted(raw, key=str)]
    if host.var("resolv_conf") is not None:
        c.resolv_conf = _resolv(host.var("resolv_conf"), where("resolv_conf"))
    if host.var("hosts") is not None:
        c.hosts = _hosts(host.var("hosts"), where("hosts"))
    if host.var("timezone") is not None:
        c.timezone = _timezone(host.var("timezone"), where("timezone"))
    return c


# -- pieces ---------------------------------------------------------------------

def _mapping(value, what, where):
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a mapping, not {type(value).__name__}", where=where)
    return value


def _list(value, what, where):
    if not isinstance(value, list):
        raise UserError(f"{what} must be a list, not {type(value).__name__}", where=where)
    return value


def _unique(names, what, where):
    seen = set()
    for n in names:
        if n in seen:
            raise UserError(f"{what} {n!r} is declared twice", where=where)
        seen.add(n)


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def _fields(entry, allowed, what, where):
    if not isinstance(entry, dict):
        raise UserError(f"{what} must be a mapping, not {type(entry).__name__} {entry!r}",
                        where=where)
    for key in entry:
        if key not in allowed:
            raise UserError(f"{what}: unknown field {key!r}{_did_you_mean(key, allowed)} "
                            f"(fields: {', '.join(allowed)})", where=where)
    return entry


def scalar_text(value, what, where):
    """An inventory scalar as the text a FreeBSD file holds: true/false as
    YES/NO (as sysrc(8) writes rc.conf's switches), numbers as digits."""
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, number or true/false, not "
                        f"{type(value).__name__}", where=where)
    if not ONE_LINE.match(value):
        raise UserError(f"{what} holds a newline or a control character", where=where)
    refuse_private_key(value, what, where)
    return value


def refuse_private_key(text, what, where):
    if PRIVATE_KEY.search(text):
        raise UserError(f"{what} looks like a private key: a value in the configuration goes "
                        "into /frx/store, world-readable, the cache and every bundle; declare "
                        "it under secrets: instead", where=where)


def _rc_vars(value, what, where):
    raw = _mapping(value, what, where)
    out = {}
    for name in sorted(raw, key=str):
        if not isinstance(name, str) or not RC_NAME.match(name):
            raise UserError(f"{what}: {name!r} is not an rc.conf variable name", where=where)
        out[name] = scalar_text(raw[name], f"{what}.{name}", where)
    return out


def _named_values(value, what, pattern, where):
    raw = _mapping(value, what, where)
    out = {}
    for name in sorted(raw, key=str):
        if not isinstance(name, str) or not pattern.match(name):
            raise UserError(f"{what}: {name!r} is not a {what} name", where=where)
        text = scalar_text(raw[name], f"{what}.{name}", where)
        if not text or any(ch.isspace() for ch in text):
            raise UserError(f"{what}.{name}: a value is one word, not {text!r}", where=where)
        out[name] = text
    return out


def check_path(path, what, where, lab=False):
    if not isinstance(path, str) or not PATH.match(path) or "//" in path:
        raise UserError(f"{what}: {path!r} is not an absolute path of plain characters "
                        "(letters, digits, . _ - @ + , = :; no . or .. parts)", where=where)
    if any(part in (".", "..") for part in path.split("/")):
        raise UserError(f"{what}: {path!r} has a . or .. part", where=where)
    for bad in FORBIDDEN:
        if path == bad or path.startswith(bad + "/"):
            raise UserError(f"{what}: {path} is not a file fruixops manages as a file"
                            + (" (users: and groups: manage the accounts)"
                               if "passwd" in bad or "group" in bad or "pwd" in bad else
                               " (rc_conf: goes into the system's own rc.conf)"
                               if bad == "/etc/rc.conf" else ""), where=where)
    if lab and not path.startswith(LAB_TREES):
        raise UserError(f"{what}: {path}: a lab host has its own {', '.join(LAB_TREES)} only "
                        "(its other trees are the machine's)", where=where)


def parse_mode(value, what, where):
    """A file mode as Ansible takes it: a string of octal digits ("0644"),
    or a number YAML 1.1 read as octal (0644 unquoted is 420)."""
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        mode = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        mode = value
    else:
        raise UserError(f"{what}: mode {value!r} is not a file mode; write it quoted, "
                        "mode: \"0644\"", where=where)
    if mode & 0o6000 and mode & 0o022:
        raise UserError(f"{what}: mode {mode:04o} is set-id and writable by others",
                        where=where)
    return mode


def _file(path, entry, where, lab):
    what = f"files[{path!r}]"
    check_path(path, "files", where, lab)
    if entry is None:
        entry = {}
    if isinstance(entry, str):
        entry = {"content": entry}
    f = _fields(entry, ("template", "src", "content", "mode", "owner", "group", "notify",
                        "validate"), what, where)
    sources = [k for k in ("template", "src", "content") if k in f]
    if len(sources) != 1:
        raise UserError(f"{what} needs exactly one of template, src or content", where=where)
    kind = sources[0]
    value = f[kind]
    if not isinstance(value, str):
        raise UserError(f"{what}: {kind} must be a string", where=where)
    if kind == "content":
        refuse_private_key(value, what, where)
    mode = parse_mode(f.get("mode", "0644"), what, where)
    owner, group = f.get("owner", "root"), f.get("group", "wheel")
    for label, name in (("owner", owner), ("group", group)):
        if not isinstance(name, str) or not ACCOUNT.match(name):
            raise UserError(f"{what}: {label} {name!r} is not an account name", where=where)
    notify = f.get("notify", [])
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or not all(isinstance(n, str) and SERVICE_NAME.match(n)
                                               for n in notify):
        raise UserError(f"{what}: notify names services (a name or a list)", where=where)
    validate = f.get("validate")
    if validate is not None:
        if not isinstance(validate, str) or "%s" not in validate or not ONE_LINE.match(validate):
            raise UserError(f"{what}: validate is one command line with %s for the new file "
                            "(as Ansible's validate)", where=where)
    return FileDecl(path=path, kind=kind, value=value, mode=mode, owner=owner, group=group,
                    notify=tuple(sorted(set(notify))), validate=validate, where=where,
                    base_dir=str(declaring_dir(where)))


def declaring_dir(where):
    """The directory a variable's file lives in; for group_vars/ and
    host_vars/ files, the directory that holds those (templates/ and files/
    sit beside the inventory, as beside an Ansible playbook)."""
    declared = Path(where.rsplit(":", 2)[0] if where.count(":") >= 2 else where).parent
    for parent in [declared] + list(declared.parents):
        if parent.name in ("group_vars", "host_vars"):
            return parent.parent
    return declared


def _number(value, what, where, low=1, high=65533):
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{what} must be a number from {low} to {high}, not {value!r}",
                        where=where)
    return value


def _names(value, what, where):
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and ACCOUNT.match(v)
                                              for v in value):
        raise UserError(f"{what} must be a list of account names", where=where)
    return tuple(value)


def _group(entry, where):
    if isinstance(entry, str):
        entry = {"name": entry}
    g = _fields(entry, ("name", "gid", "members"), "a group", where)
    name = g.get("name")
    if not isinstance(name, str) or not ACCOUNT.match(name):
        raise UserError(f"a group needs a name (a-z, 0-9, _ -), not {name!r}", where=where)
    return GroupDecl(name=name, gid=_number(g.get("gid"), f"group {name}: gid", where, 0),
                     members=_names(g.get("members"), f"group {name}: members", where),
                     where=where)


AUTHORIZED_KEY = re.compile(r"^(\S+ )*(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
                            r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) "
                            r"[A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?$")


def _user(entry, where, lab):
    if isinstance(entry, str):
        entry = {"name": entry}
    u = _fields(entry, ("name", "uid", "group", "groups", "home", "shell", "comment",
                        "authorized_keys", "create_home", "password"), "a user", where)
    name = u.get("name")
    if not isinstance(name, str) or not ACCOUNT.match(name):
        raise UserError(f"a user needs a name (a-z, 0-9, _ -), not {name!r}", where=where)
    what = f"user {name}"
    if "password" in u:
        raise UserError(f"{what}: no password in the configuration (it goes into the store, "
                        "world-readable): accounts are locked, and log in with "
                        "authorized_keys", where=where)
    home = u.get("home", f"/home/{name}")
    check_path(home, f"{what}: home", where, lab)
    shell = u.get("shell", "/bin/sh")
    if not isinstance(shell, str) or not SHELLS.match(shell):
        raise UserError(f"{what}: shell must be an absolute path", where=where)
    comment = u.get("comment", "")
    if not isinstance(comment, str) or ":" in comment or not ONE_LINE.match(comment):
        raise UserError(f"{what}: comment is one line without ':'", where=where)
    keys = u.get("authorized_keys", [])
    if isinstance(keys, str):
        keys = [k for k in keys.splitlines() if k.strip()]
    if not isinstance(keys, list):
        raise UserError(f"{what}: authorized_keys is a list of public keys", where=where)
    for k in keys:
        if not isinstance(k, str):
            raise UserError(f"{what}: authorized_keys is a list of public keys", where=where)
        refuse_private_key(k, what, where)
        if not AUTHORIZED_KEY.match(k.strip()):
            raise UserError(f"{what}: {k[:40]!r}... is not an OpenSSH public key line",
                            where=where)
    group = u.get("group")
    if group is not None and (not isinstance(group, str) or not ACCOUNT.match(group)):
        raise UserError(f"{what}: group must be a group name", where=where)
    create_home = u.get("create_home", True)
    if not isinstance(create_home, bool):
        raise UserError(f"{what}: create_home is true or false", where=where)
    return UserDecl(name=name, uid=_number(u.get("uid"), f"{what}: uid", where, 0),
                    group=group, groups=_names(u.get("groups"), f"{what}: groups", where),
                    home=home, shell=shell, comment=comment,
                    authorized_keys=tuple(k.strip() for k in keys), create_home=create_home,
                    where=where)


def _cron(name, entry, where):
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise UserError(f"cron: {name!r} is not a job name (a-z, 0-9, _ -)", where=where)
    what = f"cron.{name}"
    c = _fields(entry, CRON_FIELDS + ("special_time", "user", "job"), what, where)
    job = c.get("job")
    if not isinstance(job, str) or not job.strip() or not ONE_LINE.match(job):
        raise UserError(f"{what}: job is one command line", where=where)
    refuse_private_key(job, what, where)
    user = c.get("user", "root")
    if not isinstance(user, str) or not ACCOUNT.match(user):
        raise UserError(f"{what}: user must be an account name", where=where)
    if "special_time" in c:
        if any(k in c for k in CRON_FIELDS) or c["special_time"] not in CRON_SPECIAL:
            raise UserError(f"{what}: special_time is one of {', '.join(CRON_SPECIAL)}, "
                            "instead of minute/hour/day/month/weekday", where=where)
        schedule = "@" + c["special_time"]
    else:
        parts = []
        for k in CRON_FIELDS:
            v = str(c.get(k, "*"))
            if not re.fullmatch(r"[0-9A-Za-z*/,-]+", v):
                raise UserError(f"{what}: {k} {v!r} is not a crontab field", where=where)
            parts.append(v)
        schedule = " ".join(parts)
    return CronDecl(name=name, schedule=schedule, user=user, job=job, where=where)


def _resolv(value, where):
    r = _fields(value, ("nameservers", "search", "domain", "options"), "resolv_conf", where)
    out = {}
    for key in ("nameservers", "search", "options"):
        items = r.get(key, [])
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(
                isinstance(i, str) and re.fullmatch(r"[A-Za-z0-9.:_%-]+", i) for i in items):
            raise UserError(f"resolv_conf.{key} is a list of words", where=where)
        out[key] = list(items)
    if len(out["nameservers"]) > 3:
        raise UserError("resolv_conf.nameservers: the resolver reads at most 3 (MAXNS)",
                        where=where)
    domain = r.get("domain")
    if domain is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", str(domain)):
        raise UserError("resolv_conf.domain is a domain name", where=where)
    out["domain"] = domain
    return out


def _hosts(value, where):
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for e in value:
            e = _fields(e, ("address", "names"), "a hosts entry", where)
            pairs.append((e.get("address"), e.get("names")))
    else:
        raise UserError("hosts is a mapping of address to names", where=where)
    out = []
    for addr, names in pairs:
        if isinstance(names, str):
            names = names.split()
        if (not isinstance(addr, str) or not re.fullmatch(r"[0-9A-Fa-f.:%a-z]+", addr)
                or not isinstance(names, list) or not names
                or not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9.-]+", n)
                           for n in names)):
            raise UserError(f"hosts: {addr!r}: an address and a list of names", where=where)
        out.append((addr, tuple(names)))
    return out


def _timezone(value, where):
    if not isinstance(value, str) or not TZ_NAME.match(value):
        raise UserError(f"timezone {value!r} is not a time zone name (Area/City)", where=where)
    if ZONEINFO.is_dir() and not (ZONEINFO / value).is_file():
        close = difflib.get_close_matches(value, _zones(), n=1, cutoff=0.7)
        raise UserError(f"unknown timezone {value!r}"
                        + (f"; did you mean {close[0]!r}?" if close else ""), where=where)
    return value


def _zones():
    out = []
    for p in ZONEINFO.rglob("*"):
        if p.is_file() and p.name[0].isupper():
            out.append(str(p.relative_to(ZONEINFO)))
    return out
