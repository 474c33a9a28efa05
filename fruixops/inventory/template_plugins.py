"""The filters, tests and lookups of templates (templating.py), as Ansible's
plugins of those kinds behave in ansible-core 2.19.

- filters: Jinja2's own, and Ansible's ``FILTERS`` (``bool``, ``mandatory``,
  ``to_json``, ``to_nice_yaml``, ``regex_replace``, ``b64decode``, ``quote``...);
- tests: Jinja2's own (``defined``...), and ``match``, ``search``, ``regex``;
- lookups (``LOOKUPS``): ``env``; ``file``, DIR/files/NAME then DIR/NAME for
  the template's directories; ``pipe``, a shell command run on the controller
  in the first of them, as Ansible runs it. ``lookup()`` gives one value as
  it is and joins several with commas; ``query()`` (``q()``) gives the list.

A failure is ``Refused``, with a message for the user; templating.py adds
the file, line and variable.
"""

import base64
import json
import os
import re
import shlex
import subprocess

import yaml
from jinja2 import Undefined, pass_context

LOOKUPS = ("env", "file", "pipe")


class Refused(Exception):
    """A lookup, filter or test refused (its message is the user's)."""


def defined(value):
    """*value*, or the error of the first undefined variable in it (as
    Ansible, which refuses "{{ [x] }}" too)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, dict):
        for v in value.values():
            defined(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            defined(v)
    return value


@pass_context
def _lookup(context, name, *terms, wantlist=False, errors="strict", **options):
    """lookup(NAME, TERMS...): Ansible's result — one value as it is,
    several joined with commas when they are text, [] when none."""
    found = _run_lookup(context, name, terms, errors, options)
    if found is None:                       # failed, and errors='ignore'
        return [] if wantlist else None
    if wantlist or not found:
        return found
    if len(found) == 1:
        return found[0]
    return ",".join(found) if all(isinstance(f, str) for f in found) else found


@pass_context
def _query(context, name, *terms, errors="strict", **options):
    return _run_lookup(context, name, terms, errors, options) or []


def _run_lookup(context, name, terms, errors, options):
    if name not in _LOOKUP_RUN:
        raise Refused(f"lookup {name!r} is not one fruixops has ({', '.join(LOOKUPS)})")
    if errors not in ("strict", "ignore"):
        raise Refused(f"lookup {name!r}: errors={errors!r} (strict or ignore)")
    defined(list(terms))
    defined(options)
    # A value's own directory (templating's scope of it), else the environment's.
    paths = getattr(context.parent, "search_path", None) or context.environment.search_path
    try:
        return _LOOKUP_RUN[name](terms, paths or [os.getcwd()], **options)
    except TypeError as exc:
        raise Refused(f"lookup {name!r}: {exc}") from None
    except Refused:
        if errors == "ignore":
            return None
        raise


def _lookup_env(terms, paths, default=""):
    return [os.environ.get(str(t).split()[0], default) for t in terms]


def _lookup_file(terms, paths, lstrip=False, rstrip=True):
    out = []
    for term in terms:
        path = _find_file(str(term), paths)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise Refused(f"lookup 'file': {term!r}: {exc.__class__.__name__}") from None
        text = text.lstrip() if lstrip else text
        out.append(text.rstrip() if rstrip else text)
    return out


def _find_file(term, paths):
    """As Ansible's file search: an absolute path (or ~) as it is, else
    DIR/files/TERM then DIR/TERM for each directory."""
    candidates = [os.path.expanduser(term)] if term.startswith(("~", os.sep)) else []
    for d in paths if not candidates else ():
        if term.split("/")[0] != "files":
            candidates.append(os.path.join(d, "files", term))
        candidates.append(os.path.join(d, term))
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise Refused(f"lookup 'file': no file {term!r} (looked for {', '.join(candidates)})")


def _lookup_pipe(terms, paths):
    out = []
    for term in terms:
        # As Ansible: a shell command on the controller, in the directory of
        # the value, its output up to the trailing white space.
        try:
            done = subprocess.run(str(term), shell=True, cwd=paths[0], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE)
        except OSError as exc:
            raise Refused(f"lookup 'pipe': {paths[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            raise Refused(f"lookup 'pipe': {str(term)!r} exited with {done.returncode}")
        out.append(done.stdout.decode("utf-8", errors="replace").rstrip())
    return out


_LOOKUP_RUN = {"env": _lookup_env, "file": _lookup_file, "pipe": _lookup_pipe}


# -- Ansible's filters and tests ------------------------------------------------------

def _bool(value):
    # Ansible's bool filter; where Ansible 2.19 coerces anything else to
    # False with a deprecation warning (an error from 2.23), fruixops refuses.
    text = str(value).lower() if isinstance(value, (str, int)) else None
    if text in ("yes", "on", "true", "1"):
        return True
    if text in ("no", "off", "false", "0"):
        return False
    raise Refused(f"bool: {value!r} is not a boolean (yes/no, on/off, true/false, 1/0)")


def _mandatory(value, msg=None):
    if isinstance(value, Undefined):
        named = f"{value._undefined_name!r} " if value._undefined_name else ""
        raise Refused(msg or f"mandatory variable {named}not defined")
    return value


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _to_json(value, **options):
    return json.dumps(value, default=_json_default, **options)


def _to_nice_json(value, indent=4, sort_keys=True, **options):
    options.pop("separators", None)
    return _to_json(value, indent=indent, sort_keys=sort_keys, separators=(",", ": "), **options)


def _to_yaml(value, *_, default_flow_style=None, **options):
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=default_flow_style,
                          **options)


def _to_nice_yaml(value, indent=4, *_, default_flow_style=False, **options):
    return _to_yaml(value, indent=indent, default_flow_style=default_flow_style, **options)


def _b64encode(text, encoding="utf-8", urlsafe=False):
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(str(text).encode(encoding)).decode("ascii")


def _b64decode(text, encoding="utf-8", urlsafe=False):
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    return decode(str(text).encode("utf-8")).decode(encoding)


def _quote(value):
    return shlex.quote("" if value is None else str(value))


def _flags(ignorecase=False, multiline=False):
    return (re.I if ignorecase else 0) | (re.M if multiline else 0)


def _regex_replace(value="", pattern="", replacement="", ignorecase=False, multiline=False,
                   count=0, mandatory_count=0):
    out, subs = re.compile(pattern, _flags(ignorecase, multiline)).subn(replacement, str(value),
                                                                         count=count)
    if mandatory_count and mandatory_count != subs:
        raise Refused(f"regex_replace: {pattern!r} should match {mandatory_count} times, "
                      f"not {subs}")
    return out


def _regex_search(value, regex, *groups, ignorecase=False, multiline=False):
    wanted = []
    for arg in groups:
        named = re.fullmatch(r"\\g<(\S+)>", arg)
        numbered = re.fullmatch(r"\\(\d+)", arg)
        if not (named or numbered):
            raise Refused(f"regex_search: unknown argument {arg!r}")
        wanted.append(named.group(1) if named else int(numbered.group(1)))
    found = re.search(regex, str(value), _flags(ignorecase, multiline))
    if found:
        return [found.group(g) for g in wanted] if wanted else found.group()
    return None


def _regex_findall(value, regex, multiline=False, ignorecase=False):
    return re.findall(regex, str(value), _flags(ignorecase, multiline))


def _ternary(value, true_val, false_val, none_val=None):
    if value is None and none_val is not None:
        return none_val
    return true_val if value else false_val


def _dict2items(mapping, key_name="key", value_name="value"):
    return [{key_name: k, value_name: v} for k, v in mapping.items()]


def _items2dict(items, key_name="key", value_name="value"):
    return {item[key_name]: item[value_name] for item in items}


def _combine(*mappings, recursive=False):
    out = {}
    for mapping in mappings:
        for k, v in mapping.items():
            both = recursive and isinstance(out.get(k), dict) and isinstance(v, dict)
            out[k] = _combine(out[k], v, recursive=True) if both else v
    return out


def _path(function):
    return lambda value: function(str(value))


FILTERS = {
    "bool": _bool, "mandatory": _mandatory, "ternary": _ternary,
    "to_json": _to_json, "to_nice_json": _to_nice_json, "from_json": json.loads,
    "to_yaml": _to_yaml, "to_nice_yaml": _to_nice_yaml, "from_yaml": yaml.safe_load,
    "b64encode": _b64encode, "b64decode": _b64decode, "quote": _quote,
    "basename": _path(os.path.basename), "dirname": _path(os.path.dirname),
    "expanduser": _path(os.path.expanduser),
    "regex_replace": _regex_replace, "regex_search": _regex_search,
    "regex_findall": _regex_findall, "regex_escape": lambda s: re.escape(str(s)),
    "split": lambda s, sep=None, maxsplit=-1: str(s).split(sep, maxsplit),
    "dict2items": _dict2items, "items2dict": _items2dict, "combine": _combine,
}


def _regex_test(kind):
    def test(value, pattern="", ignorecase=False, multiline=False):
        return bool(getattr(re.compile(pattern, _flags(ignorecase, multiline)), kind)(str(value)))
    return test


TESTS = {"match": _regex_test("match"), "search": _regex_test("search"),
         "regex": _regex_test("search")}


GLOBALS = {"lookup": _lookup, "query": _query, "q": _query}
