"""Random Ansible inventories and host patterns for the differential tests.

`make_case(rnd)` draws a group graph (nested groups, hosts in several groups,
groups declared in several places, top-level groups beside `all`), variables
at every level (inline, `group_vars/` and `host_vars/` as files of each kind or
directories, `ansible_group_priority`), writes it as YAML or INI (one file, or
several in a directory), and draws patterns over its names. Ansible's
connection variables come in both spellings (`ansible_host` and
`ansible_ssh_host`...) and as templates: Jinja2 expressions, filters, the
`env`, `pipe` and `file` lookups (`LOOKUP_ENV`, `LOOKUP_FILE` are what they
read), references to other variables (defined or not, or in a loop). With
*legacy*, only what the old loader read: one YAML file under `all`,
fruixops's own string variables, `.yaml` vars files."""

import ast
import json
from pathlib import Path

GROUPS = ["web", "db", "app", "edge", "canary", "east", "west", "g_1"]
HOSTS = ["web1", "web2", "db1", "db01", "app1", "mon1", "x1", "node7"]
RANGED = {"rack[1:2]": ["rack1", "rack2"], "n[a:c]": ["na", "nb", "nc"],
          "s[08:10:2]": ["s08", "s10"]}
USER_VARS = ["v1", "v2", "colour", "ansible_user", "ansible_host"]
# How a host is reached, in both of Ansible's spellings, and its privilege
# escalation: each with plain and templated values (TEMPLATES).
REACH_VARS = ["ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_ssh_user",
              "ansible_private_key_file", "ansible_ssh_private_key_file", "ansible_become",
              "ansible_become_method", "ansible_become_user", "ansible_sudo_user"]
LOOKUP_ENV = ("FRUIXOPS_DIFF_ENV", "from-env")
LOOKUP_FILE = ("user.txt", "from-file\n")     # beside the inventory: Ansible skips *.txt
_NAMES = ["{{ inventory_hostname }}.example", "{{ v1 }}-ref", "{{ v2 | default('dflt') }}-d",
          "{{ lookup('env', 'FRUIXOPS_DIFF_ENV') }}", "{{ lookup('pipe', 'cat user.txt') }}",
          "{{ lookup('file', 'user.txt') | upper }}", "g-{{ group_names | join('+') }}",
          "{{ ansible_host }}-via", "{{ ansible_ssh_host }}-via", "{{ ansible_user }}-u",
          "{{ none }}", "{{ 'a b' | replace(' ', '_') | trim }}", "{{ v1"]
TEMPLATES = {
    "name": _NAMES,
    "port": ["{{ 22 | int }}", "{{ 2200 + 1 }}", "{{ '2201' }}", "{{ v1 | default(2202) | int }}",
             "{{ 70000 }}", "{{ ansible_port }}", "{{ none }}", "{{ [22] | first }}"],
    "key": ["{{ inventory_dir }}/keys/id", "/keys/{{ inventory_hostname }}", "~/.ssh/{{ 'id' }}"],
    "become": ["{{ 'true' | trim }}", "{{ 'no' }}", "{{ v1 is defined }}", "{{ 1 == 1 }}",
               "{{ 'maybe' }}"],
    "method": ["{{ 'sudo' }}", "{{ 'sudo' | lower }}"],
    "user": ["{{ 'root' }}", "{{ 'postgres' }}"],
}
PLAIN_REACH = {"name": None, "port": ['"2222"', "22", "2200"], "key": ['"/keys/plain"'],
               "become": ["true", '"yes"', "false", '"on"', '"0"'], "method": ['"sudo"', '"su"'],
               "user": ['"root"', '"postgres"']}


def _kind(var):
    return ("port" if var.endswith("port") else "key" if var.endswith("key_file") else
            "become" if var == "ansible_become" else "method" if var.endswith("method") else
            "user" if var in ("ansible_become_user", "ansible_sudo_user") else "name")
LEGACY_VARS = ["ssh_user", "reboot_command", "power_cycle_command", "ssh_host_key"]
# Plain YAML scalars Ansible's YAML 1.1 loader types: bool, octal, sexagesimal...
PLAIN = ["yes", "on", "No", "010", "0x1F", "1_000", "12:30", "1e3", "1.5", "2001-12-14", "~"]


class Case:
    def __init__(self):
        self.files = {}        # relative path -> text
        self.sources = []      # relative paths given as --inventory
        self.patterns = []
        self.limit_files = {}  # @file name -> lines


def make_case(rnd, legacy=False):
    case = Case()
    groups = rnd.sample(GROUPS, rnd.randint(1, 5))
    if not legacy and rnd.random() < 0.15:
        groups.append("ungrouped")
    entries = rnd.sample(HOSTS, rnd.randint(1, 6))
    if not legacy and rnd.random() < 0.4:
        entries.append(rnd.choice(list(RANGED)))
    if not legacy and rnd.random() < 0.3:
        i = rnd.randrange(len(entries))
        if entries[i] in HOSTS:
            entries[i] += f":{rnd.choice([22, 2222])}"
    # A DAG: parents come earlier in the list.
    parents = {g: rnd.sample(groups[:i], rnd.randint(0, min(2, i))) if g != "ungrouped" else []
               for i, g in enumerate(groups)}
    members = {e: rnd.sample(groups, rnd.randint(0, min(3, len(groups)))) for e in entries}
    names = USER_VARS + REACH_VARS if not legacy else LEGACY_VARS

    def value(owner, var, inline=True):
        if var in REACH_VARS or (var.startswith("ansible_") and rnd.random() < 0.4):
            kind = _kind(var)
            if rnd.random() < 0.5:
                return json.dumps(rnd.choice(TEMPLATES[kind]))
            return rnd.choice(PLAIN_REACH[kind] or [json.dumps(f"{owner}.{var}")])
        if legacy or var.startswith("ansible_") or rnd.random() < 0.6:
            return json.dumps(f"{owner}.{var}")
        if inline and rnd.random() < 0.5:
            return rnd.choice(PLAIN)
        return json.dumps(rnd.choice([3, 1.5, True, None, [1, "a"], {"k": owner}]))

    def some_vars(owner, inline=True):
        return {v: value(owner, v, inline) for v in rnd.sample(names, rnd.randint(0, 3))}

    gvars = {g: some_vars(g) for g in groups}
    for g in groups:
        if not legacy and rnd.random() < 0.3:
            gvars[g]["ansible_group_priority"] = str(rnd.randint(1, 3))
    allvars = some_vars("all")
    hvars = {e: some_vars(entry_names(e)[0]) for e in entries}
    fmt = "yaml" if legacy or rnd.random() < 0.7 else "ini"
    if fmt == "yaml":
        roots = _yaml_roots(rnd, groups, parents, members, gvars, allvars, hvars, legacy)
        if not legacy and len(roots) > 1 and rnd.random() < 0.35:
            cut = rnd.randint(1, len(roots) - 1)
            case.files["inv/a.yaml"] = _yaml_text(roots[:cut])
            case.files["inv/b.yml"] = _yaml_text(roots[cut:])
            case.sources = ["inv"] if rnd.random() < 0.5 else ["inv/a.yaml", "inv/b.yml"]
        else:
            case.files["inv/hosts.yaml"] = _yaml_text(roots)
            case.sources = ["inv/hosts.yaml"]
    else:
        case.files["inv/hosts"] = _ini_text(rnd, groups, parents, members, gvars, allvars, hvars)
        case.sources = [rnd.choice(["inv/hosts", "inv"])]
    _vars_files(rnd, case, ["all"] + groups, "group_vars", legacy, some_vars)
    host_names = [n for e in entries for n in entry_names(e)]
    _vars_files(rnd, case, host_names, "host_vars", legacy, some_vars)
    case.patterns = [_pattern(rnd, groups, host_names, legacy) for _ in range(14)]
    if not legacy:
        lines = rnd.sample(host_names + groups + ["!" + rnd.choice(groups)], 2)
        case.limit_files["retry"] = lines
    return case


def entry_names(entry):
    """The hosts one host key stands for: a range, or a name with an optional port."""
    return RANGED.get(entry) or [entry.split(":")[0]]


def _yaml_roots(rnd, groups, parents, members, gvars, allvars, hvars, legacy):
    """Top-level (name, mapping) pairs; a group's content spread over its declarations."""
    top_all = {}
    roots = [("all", top_all)]
    slots = {}
    for g in groups:
        slots[g] = []
        for p in parents[g]:
            host_slot = rnd.choice(slots[p])
            mine = {}
            host_slot.setdefault("children", {})[g] = mine
            slots[g].append(mine)
        if not parents[g]:
            mine = {}
            if legacy or rnd.random() < 0.5:
                top_all.setdefault("children", {})[g] = mine
            else:
                roots.append((g, mine))
            slots[g].append(mine)
        if not legacy and rnd.random() < 0.3 and g not in dict(roots):
            again = {}               # declared once more, at the top level
            roots.append((g, again))
            slots[g].append(again)
    for g in groups:
        for var, val in gvars[g].items():
            rnd.choice(slots[g]).setdefault("vars", {})[var] = val
    for e, gs in members.items():
        vs = list(hvars[e].items())
        places = [rnd.choice(slots[g]) for g in gs] or [top_all]
        for i, place in enumerate(places):
            share = dict(vs[i::len(places)])
            place.setdefault("hosts", {})[e] = share
    if allvars:
        top_all["vars"] = allvars
    for _, mapping in roots:
        _shuffle_sections(rnd, mapping)
    rnd.shuffle(roots)
    return roots


def _shuffle_sections(rnd, mapping):
    keys = list(mapping)
    rnd.shuffle(keys)
    items = [(k, mapping.pop(k)) for k in keys]
    mapping.update(items)
    for child in mapping.get("children", {}).values():
        _shuffle_sections(rnd, child)


def _yaml_text(roots):
    lines = []

    def emit(name, mapping, depth):
        pad = "  " * depth
        if not mapping:
            lines.append(f"{pad}{name}:")
            return
        lines.append(f"{pad}{name}:")
        for section, content in mapping.items():
            lines.append(f"{pad}  {section}:")
            for key, sub in content.items():
                if section == "vars":
                    lines.append(f"{pad}    {key}: {sub}")
                elif section == "hosts":
                    inner = ", ".join(f"{k}: {v}" for k, v in sub.items())
                    lines.append(f"{pad}    {key}: {{{inner}}}" if sub else f"{pad}    {key}:")
                else:
                    emit(key, sub, depth + 2)

    for name, mapping in roots:
        emit(name, mapping, 0)
    return "\n".join(lines) + "\n"


def _ini_value(text):
    if text.startswith('"') and not any(c in text for c in " '{"):
        return json.loads(text)
    if text.startswith('"'):
        try:
            ast.literal_eval(json.loads(text))
        except TypeError:
            # ansible-core's INI reader fails on "{{ 'a' }}" (literal_eval
            # reads an unhashable set of a set): the same value, not a literal.
            text = json.dumps(json.loads(text).replace(" }}", " | string }}"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        return text              # quoted, as Ansible's INI reader unquotes it
    if text[0] in "[{":
        return json.dumps(json.loads(text), separators=(",", ":"))
    return text


def _ini_text(rnd, groups, parents, members, gvars, allvars, hvars):
    sections = []
    loose = [e for e, gs in members.items() if not gs]
    for g in groups:
        hosts = [e for e, gs in members.items() if g in gs]
        sections.append((f"[{g}]", [_ini_host(e, hvars[e]) for e in hosts]))
        if gvars[g]:
            sections.append((f"[{g}:vars]", [f"{k}={_ini_value(v)}" for k, v in gvars[g].items()]))
        kids = [c for c in groups if g in parents[c]]
        if kids:
            sections.append((f"[{g}:children]", kids))
    rnd.shuffle(sections)
    if allvars:
        sections.append(("[all:vars]", [f"{k}={_ini_value(v)}" for k, v in allvars.items()]))
    out = [_ini_host(e, hvars[e]) for e in loose]
    for head, body in sections:
        out.append(head)
        out.extend(body)
    return "\n".join(out) + "\n"


def _ini_host(entry, hvars):
    return " ".join([entry] + [f"{k}={_ini_value(v)}" for k, v in hvars.items()])


def _vars_files(rnd, case, names, kind, legacy, some_vars):
    for name in names:
        if rnd.random() < 0.5:
            continue
        text = lambda: "".join(f"{k}: {v}\n" for k, v in some_vars(f"{kind}/{name}",  # noqa: E731
                                                                      inline=False).items())
        shape = "yaml" if legacy else rnd.choice(["yml", "yaml", "json", "bare", "dir", "both"])
        base = f"inv/{kind}/{name}"
        if shape == "json":
            data = {k: json.loads(v) for k, v in some_vars(name, inline=False).items()}
            case.files[base + ".json"] = json.dumps(data)
        elif shape == "bare":
            case.files[base] = text()
        elif shape == "dir":
            case.files[base + "/b.yml"] = text()
            case.files[base + "/a"] = text()
            case.files[base + "/sub/c.yaml"] = text()
        elif shape == "both":              # NAME.yml is read, NAME.yaml is not
            case.files[base + ".yml"] = text()
            case.files[base + ".yaml"] = text()
        else:
            case.files[f"{base}.{shape}"] = text()


def _pattern(rnd, groups, hosts, legacy):
    pool = groups + hosts + ["all", "nosuch", "w*", "*1", "d?1", "[wd]*", "*", "ungrouped",
                             "~w", "~(web|db)", "~.*1$", "*.example.com"]
    g = rnd.choice(groups)
    pool += [f"{g}[{rnd.randint(-2, 3)}]", f"{g}[{rnd.randint(0, 2)}:{rnd.randint(0, 3)}]",
             f"{g}[1:]", "w*[0]"]
    terms = []
    for i in range(rnd.randint(1, 3)):
        prefix = "" if i == 0 and rnd.random() < 0.8 else rnd.choice(["", "&", "!"])
        terms.append(prefix + rnd.choice(pool))
    return rnd.choice([":", ","]).join(terms)


def write(case, root):
    root = Path(root)
    (root / "inv").mkdir(parents=True, exist_ok=True)
    (root / "inv" / LOOKUP_FILE[0]).write_text(LOOKUP_FILE[1])
    for rel, text in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, lines in case.limit_files.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return [root / s for s in case.sources]

