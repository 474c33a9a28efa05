"""Jinja2 as Ansible uses it: ``environment()`` for host configuration
templates, ``render_value`` for a templated inventory value, ``Variables``
for a host's variables, each rendered when first read.

An inventory value is rendered as ansible-core 2.19 renders it when a task
reads it:

- only a string holding ``{{``, ``{%`` or ``{#`` is a template; any other
  value is kept as it is, lists and mappings rendered item by item;
- a template that is one expression keeps its value's type (native types):
  ``"{{ 22 | int }}"`` is 22, ``"{{ '22' }}"`` is "22"; several pieces are
  joined as text, pieces that are None left out;
- it sees the host's other variables, each rendered the same way when it is
  read, and the magic variables the host is given (``inventory_hostname``...);
- in Ansible's sandbox, with StrictUndefined, Jinja2's filters and tests,
  Ansible's most used ones and the lookups ``env``, ``file`` and ``pipe``
  (template_plugins.py).

An undefined variable, a variable that refers to itself, any other filter,
test or lookup, a failed lookup: a UserError naming the value's file:line and
the variable, never the raw text used instead.
"""

import functools
import os
import threading
from collections.abc import Mapping

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2 import pass_context
from jinja2.lexer import TOKEN_STRING, TOKEN_VARIABLE_BEGIN, TOKEN_VARIABLE_END, Lexer
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import SandboxedEnvironment

from fruixops.errors import UserError
from fruixops.inventory.template_plugins import FILTERS, GLOBALS, TESTS, Refused, defined

MARKERS = ("{{", "{%", "{#")


def is_template(value):
    """Whether Ansible would render *value* (a string holding a marker)."""
    return isinstance(value, str) and any(m in value for m in MARKERS)


def holds_template(value):
    """Whether *value*, or anything in it, is a template."""
    if isinstance(value, dict):
        return any(holds_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_template(v) for v in value)
    return is_template(value)


# -- the environments -----------------------------------------------------------

def environment(search_path=None):
    """A Jinja2 environment configured as Ansible's, for text: a host's
    configuration files (``get_template(NAME).render(variables)``).
    *search_path* (a directory or a list of them): where templates,
    ``{% include %}`` and ``lookup('file')`` look (DIR/files/NAME, then
    DIR/NAME), and where ``lookup('pipe')`` runs."""
    if isinstance(search_path, (str, os.PathLike)):
        search_path = [search_path]
    paths = [str(p) for p in search_path or ()]
    env = SandboxedEnvironment(loader=FileSystemLoader(paths) if paths else None,
                               undefined=StrictUndefined, trim_blocks=True,
                               keep_trailing_newline=True, finalize=_text_piece,
                               autoescape=False)
    return _configure(env, paths)


class _ValueEnvironment(SandboxedEnvironment):
    # Each {{ }} yields its value, not str() of it: render_value joins them.
    code_generator_class = NativeCodeGenerator

    @functools.cached_property
    def lexer(self):
        return _ValueLexer(self)


class _ValueLexer(Lexer):
    r"""Ansible's: a backslash in a string constant inside {{ }} stands for
    itself, since YAML has already read a double-quoted value's escapes:
    "{{ 'C:\new' }}" in YAML is C:
ew, a backslash and an n."""

    def tokeniter(self, *args, **kwargs):
        inside = False
        for token in super().tokeniter(*args, **kwargs):
            if token[1] in (TOKEN_VARIABLE_BEGIN, TOKEN_VARIABLE_END):
                inside = token[1] == TOKEN_VARIABLE_BEGIN
            elif inside and token[1] == TOKEN_STRING:
                token = (token[0], token[1], token[2].replace("\\", "\\\\"))
            yield token


def _configure(env, search_path):
    env.search_path = search_path
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    env.globals.update(GLOBALS)
    return env


def _text_piece(value):
    return "" if value is None else defined(value)


@pass_context
def _value_piece(context, value):
    # Taking the context keeps Jinja2 from folding constants at compile
    # time, which the native code generator would turn into text.
    return defined(value)


# The environment of values. As Ansible's, it keeps Jinja2's default: one
# trailing newline of a template is dropped, then put back (with any others)
# on a text result by render_value.
_VALUES = _configure(_ValueEnvironment(undefined=StrictUndefined, trim_blocks=True,
                                       finalize=_value_piece, autoescape=False), [])


@functools.lru_cache(maxsize=4096)
def _compiled(source):
    return _VALUES.from_string(source)


# -- rendering a value -------------------------------------------------------------

def render_value(value, variables, where, name=None, search_path=None):
    """*value* rendered as Ansible renders a variable: a template string
    (recursively in lists and mappings) with *variables* (a mapping, read
    only for the names the template uses). *where* (file:line:column) and
    *name* are for errors; *search_path* is where ``file`` looks and
    ``pipe`` runs (default: the directory of *where*'s file)."""
    if isinstance(value, dict):
        return {k: render_value(v, variables, where, name, search_path) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables, where, name, search_path) for v in value]
    if not is_template(value):
        return value
    if search_path is None:
        search_path = [os.path.dirname(str(where).rsplit(":", 2)[0]) or "."]
    said = f"variable {name!r}: " if name else ""
    try:
        template = _compiled(value)
        scope = _Scope(variables, _VALUES.globals, search_path)
        result = _concat(template.root_render_func(template.new_context(scope, shared=True)))
        defined(result)
    except UserError:
        raise
    except TemplateSyntaxError as exc:
        raise UserError(f"{said}template error: {_one_line(exc.message)}", where=where) from None
    except (TemplateError, Refused, TypeError, ValueError, ArithmeticError, LookupError,
            AttributeError) as exc:
        raise UserError(f"{said}{_one_line(_message(exc))}", where=where) from None
    if isinstance(result, str):
        lost = _trailing_newlines(value) - _trailing_newlines(result)
        result += "\n" * max(lost, 0)
    return result


def _concat(nodes):
    """Ansible's: one piece keeps its type; several are text."""
    pieces = [n for n in nodes if n is not None]
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    return "".join(str(defined(p)) for p in pieces)


def _trailing_newlines(text):
    return len(text) - len(text.rstrip("\n"))


def _message(exc):
    if isinstance(exc, TemplateError):
        return exc.message
    return str(exc) if isinstance(exc, Refused) else f"{type(exc).__name__}: {exc}"


def _one_line(text):
    return " ".join(str(text).split())


class _Scope(Mapping):
    """What a template's names resolve to: the variables, then Jinja2's and
    fruixops's globals. Only the names a template uses are read."""

    def __init__(self, variables, globals_, search_path):
        self.variables, self.globals, self.search_path = variables, globals_, search_path

    def __getitem__(self, key):
        if key in self.variables:
            return self.variables[key]
        return self.globals[key]

    def __contains__(self, key):
        return key in self.variables or key in self.globals

    def __iter__(self):
        yield from self.variables
        yield from (k for k in self.globals if k not in self.variables)

    def __len__(self):
        return len(set(self.variables) | set(self.globals))


class Variables(Mapping):
    """A host's variables as its templates see them: *raw* maps a name to
    (value, where); each value is rendered when it is first read, with the
    others. *magic* (inventory_hostname, group_names...) are given, never
    rendered, and win over a variable of the same name, as in Ansible.
    *search_path(where)* is where a value set at *where* runs its lookups."""

    def __init__(self, raw, magic=None, search_path=None):
        self._raw = raw
        self._magic = magic or {}
        self._search_path = search_path or (lambda where: None)
        self._rendered = {}
        self._reading = []
        self._lock = threading.RLock()

    def where(self, name):
        return self._raw[name][1]

    def raw(self, name):
        return self._raw[name][0]

    def __getitem__(self, name):
        if name in self._magic:
            return self._magic[name]
        if name in self._rendered:
            return self._rendered[name]
        value, where = self._raw[name]
        with self._lock:
            if name in self._reading:
                loop = self._reading[self._reading.index(name):] + [name]
                raise UserError(f"variable {name!r} refers to itself ({' -> '.join(loop)})",
                                where=where)
            self._reading.append(name)
            try:
                out = render_value(value, self, where, name, self._search_path(where))
            finally:
                self._reading.pop()
            self._rendered[name] = out
        return out

    def __contains__(self, name):
        return name in self._magic or name in self._raw

    def __iter__(self):
        yield from self._raw
        yield from (k for k in self._magic if k not in self._raw)

    def __len__(self):
        return len(set(self._raw) | set(self._magic))


# Ansible's boolean(): what ansible_become and its kind accept.
_TRUE = ("y", "yes", "on", "1", "true", "t")
_FALSE = ("n", "no", "off", "0", "false", "f")


def boolean(value):
    """*value* read as ansible-core reads a boolean setting (ansible_become):
    true, yes, on, y, t, 1 in any case (and their opposites); else ValueError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{value!r} is not true or false")
