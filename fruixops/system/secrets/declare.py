"""An inventory's ``secrets:`` (a host variable) as Secret records::

    secrets:
      db_password:
        command: pass show fleet/db      # or file: PATH, or env: VAR
        owner: postgres                  # default root
        group: postgres                  # default: the owner's group
        mode: "0440"                     # default 0400
        path: /usr/local/etc/db.pass     # default /var/run/fruix/secrets/NAME
        version: 2                       # default 1

What reaches the system item (and so every cache and bundle) is the name,
version tag, path, owner, group and mode: never the value, nor a hash of
it. The version tag is the operator's: the same tag with a new value is a
rotation (no rebuild, no new generation); a new tag is a new secret that
older generations do not use (they keep theirs for a rollback).
"""

import re
from dataclasses import dataclass

from fruixops.errors import UserError

DEFAULT_DIR = "/var/run/fruix/secrets"
SOURCES = ("file", "command", "env")
FIELDS = SOURCES + ("path", "owner", "group", "mode", "version")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
ACCOUNT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$|^[0-9]{1,10}$")
PATH = re.compile(r"^/[A-Za-z0-9._/@+:-]{1,1023}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_MODE = 0o644


@dataclass(frozen=True)
class Secret:
    name: str
    source: str          # "file", "command" or "env"
    what: str            # the file's path, the command, the variable's name
    path: str
    owner: str = "root"
    group: str = "-"     # "-": the owner's primary group, on the host
    mode: int = 0o400
    version: str = "1"
    where: str = ""      # file:line:col of the host's `secrets` variable
    base: str = "."      # the directory a relative file: is read from

    def line(self):
        """Its line of the system item's config/secrets."""
        return f"{self.name} {self.version} {self.path} {self.owner} {self.group} {self.mode:04o}"

    def canonical(self):
        return {"name": self.name, "version": self.version, "path": self.path,
                "owner": self.owner, "group": self.group, "mode": f"{self.mode:04o}"}


def declared(host):
    """The host's secrets, by name (errors name the variable's file:line)."""
    raw = host.var("secrets", None)
    where = host.var_where.get("secrets", host.where)
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise UserError(f"secrets must be a mapping of names to declarations, not "
                        f"{type(raw).__name__}", where=where)
    base = where.rsplit(":", 2)[0] if where.count(":") >= 2 else where
    from pathlib import Path
    base_dir = str(Path(base).parent)
    out, seen_paths = [], {}
    for name in sorted(raw, key=str):
        s = _secret(name, raw[name], where, base_dir)
        if s.path in seen_paths:
            raise UserError(f"secrets {seen_paths[s.path]!r} and {s.name!r} both go to "
                            f"{s.path}", where=where)
        seen_paths[s.path] = s.name
        out.append(s)
    return out


def _secret(name, entry, where, base_dir):
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"bad secret name {name!r} (letters, digits, _ and -, at most 64)",
                        where=where)
    what = f"secret {name!r}"
    if not isinstance(entry, dict):
        raise UserError(f"{what} must be a mapping ({{file: PATH}}, {{command: CMD}} or "
                        f"{{env: VAR}}, with path, owner, group, mode, version)", where=where)
    for key in entry:
        if key not in FIELDS:
            raise UserError(f"{what}: unknown field {key!r} (fields: {', '.join(FIELDS)}); "
                            "a secret's value is never written in the inventory", where=where)
    given = [k for k in SOURCES if k in entry]
    if len(given) != 1:
        raise UserError(f"{what} needs exactly one of file, command, env "
                        f"(not {', '.join(given) or 'none'})", where=where)
    source = given[0]
    value = entry[source]
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{what}: {source} must be a non-empty string", where=where)
    if source == "env" and not ENV_NAME.match(value):
        raise UserError(f"{what}: env must name an environment variable, not {value!r}",
                        where=where)
    path = entry.get("path", f"{DEFAULT_DIR}/{name}")
    if not (isinstance(path, str) and PATH.match(path) and ".." not in path
            and not path.endswith("/")):
        raise UserError(f"{what}: path must be an absolute file path (letters, digits, "
                        f"._/@+:-, no ..), not {path!r}", where=where)
    if path.startswith("/frx/") or path.startswith("/var/lib/fruix/"):
        raise UserError(f"{what}: path {path} is under /frx or /var/lib/fruix, where "
                        "no plaintext may go", where=where)
    fields = {}
    for key in ("owner", "group"):
        if key in entry:
            v = entry[key]
            v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
            if not (isinstance(v, str) and ACCOUNT.match(v)):
                raise UserError(f"{what}: {key} must be an account name or number, not {v!r}",
                                where=where)
            fields[key] = v
    if "mode" in entry:
        fields["mode"] = _mode(entry["mode"], what, where)
    if "version" in entry:
        v = entry["version"]
        v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not (isinstance(v, str) and VERSION.match(v)):
            raise UserError(f"{what}: version must be a tag of letters, digits, ._- "
                            f"(at most 64), not {v!r}", where=where)
        fields["version"] = v
    return Secret(name, source, value, path, where=where, base=base_dir, **fields)


def _mode(value, what, where):
    """"0440", "440" or an integer (YAML 1.1 reads an unquoted 0440 as octal)."""
    if isinstance(value, bool):
        mode = None
    elif isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        mode = int(value, 8)
    else:
        mode = None
    if mode is None or mode & ~MAX_MODE or not mode & 0o400:
        shown = f"{mode:04o}" if isinstance(mode, int) else repr(value)
        raise UserError(f"{what}: mode must be readable by its owner and at most 0644 "
                        f"(no execute, no write but the owner's), not {shown}; write it "
                        f"quoted: mode: \"0440\"", where=where)
    return mode


def paths(host):
    """{name: path on the host} (for templates: ``secrets.NAME.path``)."""
    return {s.name: s.path for s in declared(host)}


def system_entry(host):
    """What the system item carries about the host's secrets (for
    build.system_declaration): names, version tags, paths, owners, modes.
    Empty when the host declares none."""
    return [s.canonical() for s in declared(host)]


def config_text(entries, host_name, source):
    """The system item's config/secrets: one line per secret, read by the
    receiver's secrets_activate."""
    head = [f"# Generated by fruixops for host {host_name} ({source}): the secrets this",
            "# system needs, as NAME VERSION PATH OWNER GROUP MODE (GROUP -: the owner's).",
            "# Never a value: those are delivered sealed and decrypted at activation."]
    body = [f"{e['name']} {e['version']} {e['path']} {e['owner']} {e['group']} {e['mode']}"
            for e in entries]
    return "\n".join(head + body) + "\n"
