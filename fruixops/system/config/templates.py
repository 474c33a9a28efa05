"""Files from templates, rendered on the controller as Ansible's ``template``
module renders them: Jinja2, the host's variables, ``StrictUndefined`` (a
variable the template uses and the host does not have is an error naming the
template's file and line, never an empty string).

Where a template is found: ``templates/`` beside the inventory file (or the
``group_vars``/``host_vars`` directory's inventory) that declares it, then
that directory itself; ``src:`` files likewise under ``files/``. An absolute
name is taken as it is.
"""

from pathlib import Path

import jinja2

from fruixops.errors import UserError
from fruixops.system.config.declare import refuse_private_key


def environment(search):
    """A Jinja2 environment as Ansible's: StrictUndefined, the template's
    trailing newline kept, Ansible's filters where fruixops has them."""
    from fruixops.inventory import templating
    return templating.environment(search_path=[str(p) for p in search])


def find(name, base_dir, sub):
    """The file *name* names (searched in BASE/sub, then BASE), or None."""
    path = Path(name)
    if path.is_absolute():
        return path if path.is_file() else None
    for d in (Path(base_dir) / sub, Path(base_dir)):
        if (d / name).is_file():
            return d / name
    return None


def render(decl, context):
    """The bytes of a declared file (template, src or content)."""
    if decl.kind == "content":
        return decl.value.encode()
    sub = "templates" if decl.kind == "template" else "files"
    found = find(decl.value, decl.base_dir, sub)
    if found is None:
        raise UserError(f"files[{decl.path!r}]: no {decl.kind} {decl.value!r} (looked in "
                        f"{Path(decl.base_dir) / sub} and {decl.base_dir})", where=decl.where)
    if decl.kind == "src":
        data = found.read_bytes()
        refuse_private_key(data.decode("utf-8", "replace"), f"files[{decl.path!r}]",
                           str(found))
        return data
    search = [found.parent, Path(decl.base_dir) / "templates", Path(decl.base_dir)]
    env = environment(search)
    try:
        template = env.get_template(found.name)
        # The context's variables are read (and rendered) only as the
        # template uses them: a shared context, never a copy of them all.
        from fruixops.inventory.templating import _Scope
        scope = _Scope(context, env.globals, [str(p) for p in search])
        text = env.concat(template.root_render_func(template.new_context(scope, shared=True)))
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"template syntax: {exc.message}",
                        where=f"{exc.filename or found}:{exc.lineno}") from None
    except jinja2.UndefinedError as exc:
        raise UserError(f"{exc.message} (rendering for {decl.path})",
                        where=f"{found}:{_template_line(exc, found)}") from None
    except UserError:
        raise
    except Exception as exc:  # a filter's own error: one line, the template named
        raise UserError(f"{type(exc).__name__}: {exc} (rendering for {decl.path})",
                        where=f"{found}:{_template_line(exc, found)}") from None
    refuse_private_key(text, f"files[{decl.path!r}] (rendered)", str(found))
    return text.encode()


def _template_line(exc, found):
    """The template line an exception was raised at: Jinja2 compiles a
    template to Python code named after the template's file, whose lines map
    back to the template's (get_corresponding_lineno)."""
    tb = exc.__traceback__
    line = "?"
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename == str(found):
            debug = frame.f_globals.get("__jinja_template__")
            line = debug.get_corresponding_lineno(tb.tb_lineno) if debug else tb.tb_lineno
        tb = tb.tb_next
    return line
