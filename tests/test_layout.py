"""The layout shows the architecture: packages by concern, each importing
only the packages below it (docs: README's map of the code)."""

import ast
from pathlib import Path

import fruixops

# Lowest first: a module may import its own package and those before it.
ORDER = ["printable", "errors", "inventory", "store", "remote", "system", "rollout",
         "controller", "lab", "cli"]
ROOT = Path(fruixops.__file__).parent


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_imports_only_run_downwards():
    upward = []
    for path in ROOT.rglob("*.py"):
        mine = _package(".".join(("fruixops",) + path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("fruixops"):
                targets = ([node.module] if node.module != "fruixops" else
                           [f"fruixops.{a.name}" for a in node.names])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("fruixops")]
            else:
                continue
            for target in targets:
                theirs = _package(target)
                if theirs in ORDER and mine in ORDER and ORDER.index(theirs) > ORDER.index(mine):
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno}: {mine} -> {target}")
    assert not upward, "\n".join(upward)


def test_the_top_level_is_the_packages():
    top = sorted(p.name for p in ROOT.iterdir() if not p.name.startswith(("_", ".")))
    modules = [n for n in top if n.endswith(".py")]
    assert modules == ["controller.py", "errors.py", "printable.py"], modules
    for package in ("inventory", "store", "remote", "system", "rollout"):
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
        assert doc and "Imports:" in doc, f"{package}/__init__.py must say what it may import"
