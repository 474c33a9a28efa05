"""An inventory's ``services:`` as Service records.

Each entry is a catalogue name (``sshd``), or a mapping: a catalogue
service with some fields changed (``{name: nginx, args: [...]}``), or the
operator's own service, which names its command::

    services:
      - sshd
      - name: myapp
        command: /usr/local/bin/myapp
        args: [--port, "8080"]
        user: www
        requires: [syslogd]
        respawn: true              # the default
        respawn_limit: [3, 10]     # at most 3 respawns in 10 s, then disabled
        environment: {LANG: C.UTF-8}

Anything fruixops cannot run -- an unknown name, a relative command, a
requirement no service provides, a cycle -- is refused here, at build time,
with the inventory file and line: a daemon never goes silently missing.
"""

import difflib
import re
from dataclasses import replace

from fruixops.errors import UserError
from fruixops.system.services.catalogue import CATALOGUE, Service

DEFAULT = ["sshd"]
FIELDS = ("name", "command", "args", "user", "group", "requires", "respawn", "respawn_limit",
          "environment")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# What goes into the shepherd configuration as a string: no control
# characters (a newline, an escape), nothing that is not text.
TEXT = re.compile(r"^[^\x00-\x1f\x7f]{0,4096}$")


def services_of(host):
    """The host's services, ordered: by name, each after what it requires."""
    raw = host.var("services", DEFAULT)
    where = host.var_where.get("services", host.where)
    found = {}
    for entry in raw:
        svc = _entry(entry, where)
        if svc.name in found:
            raise UserError(f"service {svc.name!r} is declared twice", where=where)
        found[svc.name] = svc
    for svc in found.values():
        for req in svc.requires:
            if req not in found:
                raise UserError(f"service {svc.name!r} requires {req!r}, which this host does "
                                f"not declare{_did_you_mean(req, found)}", where=where)
    return _ordered(found, where)


def _entry(entry, where):
    if isinstance(entry, str):
        if entry not in CATALOGUE:
            raise UserError(f"unknown service {entry!r}{_did_you_mean(entry, CATALOGUE)}; "
                            f"known: {', '.join(sorted(CATALOGUE))}; or declare your own "
                            f"with {{name: {entry}, command: /path/to/daemon}}", where=where)
        return replace(CATALOGUE[entry], where=where)
    if not isinstance(entry, dict):
        raise UserError(f"a service is a name or a mapping, not {type(entry).__name__} "
                        f"{entry!r}", where=where)
    for key in entry:
        if key not in FIELDS:
            raise UserError(f"unknown service field {key!r}{_did_you_mean(str(key), FIELDS)} "
                            f"(fields: {', '.join(FIELDS)})", where=where)
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"a service needs a name: a-z, 0-9, _ and -, starting with a letter "
                        f"(not {name!r})", where=where)
    what = f"service {name!r}"
    base = CATALOGUE.get(name)
    command = entry.get("command")
    if command is None:
        if base is None:
            raise UserError(f"{what} is not one fruixops knows{_did_you_mean(name, CATALOGUE)}: "
                            f"give its command", where=where)
        argv = list(base.command)
    else:
        argv = [command] if isinstance(command, str) else command
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise UserError(f"{what}: command must be a path or a list of strings", where=where)
        if not argv[0].startswith("/"):
            raise UserError(f"{what}: command must be an absolute path, not {argv[0]!r} "
                            f"(a supervisor has no PATH to search)", where=where)
    if "args" in entry:
        args = entry["args"]
        if not (isinstance(args, list) and all(isinstance(a, (str, int)) for a in args)):
            raise UserError(f"{what}: args must be a list of strings", where=where)
        argv = ([argv[0]] if command is None else argv) + [str(a) for a in args]
    for a in argv:
        if not TEXT.match(a):
            raise UserError(f"{what}: {a!r} holds a control character", where=where)
    fields = {}
    for key in ("user", "group"):
        if key in entry:
            if not (isinstance(entry[key], str) and ACCOUNT.match(entry[key])):
                raise UserError(f"{what}: {key} must be an account name, not {entry[key]!r}",
                                where=where)
            fields[key] = entry[key]
    if "requires" in entry:
        reqs = entry["requires"]
        if not (isinstance(reqs, list) and all(isinstance(r, str) and NAME.match(r)
                                               for r in reqs)):
            raise UserError(f"{what}: requires must be a list of service names", where=where)
        fields["requires"] = tuple(reqs)
    if "respawn" in entry:
        if not isinstance(entry["respawn"], bool):
            raise UserError(f"{what}: respawn must be true or false", where=where)
        fields["respawn"] = entry["respawn"]
    if "respawn_limit" in entry:
        lim = entry["respawn_limit"]
        if not (isinstance(lim, list) and len(lim) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 3600 for n in lim)):
            raise UserError(f"{what}: respawn_limit must be [times, seconds], e.g. [5, 7]",
                            where=where)
        fields["respawn_limit"] = tuple(lim)
    if "environment" in entry:
        env = entry["environment"]
        if not (isinstance(env, dict) and all(isinstance(k, str) and ENV_NAME.match(k)
                                              and isinstance(v, (str, int)) and TEXT.match(str(v))
                                              for k, v in env.items())):
            raise UserError(f"{what}: environment must map names to strings", where=where)
        fields["environment"] = tuple(f"{k}={v}" for k, v in sorted(env.items()))
    if base is not None and command is None:
        return replace(base, command=tuple(argv), where=where, **fields)
    doc = f"declared in {where.rsplit(':', 2)[0]}"
    return Service(name, tuple(argv), None, doc=doc, where=where, **fields)


def _ordered(found, where):
    """By name, each after what it requires (a cycle is refused)."""
    done, out, visiting = set(), [], []

    def visit(name):
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise UserError(f"services require each other in a cycle: {cycle}", where=where)
        visiting.append(name)
        for req in sorted(found[name].requires):
            visit(req)
        visiting.pop()
        done.add(name)
        out.append(found[name])
    for name in sorted(found):
        visit(name)
    return out


def _did_you_mean(word, known):
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
