"""The layers of ``jaxstyle/`` (its ``__init__`` docstring): imports go down, never up, and never round.

``ALLOWED`` is the one place the direction is written: each subpackage (and each folder of entry points)
with the subpackages it may import besides its own. Every import statement counts, also one inside a
function: a lazy import is still a dependency.
"""
import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "io": set(),
    "nets": set(),
    "checkpoints": {"io", "nets"},
    "program": {"nets", "checkpoints"},
    "training": {"io", "nets", "checkpoints", "program"},
    "app": {"io", "nets", "checkpoints", "program"},
    "commands": {"io", "nets", "checkpoints", "program", "app"},
    # Entry points, run from the repository root: thin, over the library's top layers.
    "infer": {"commands"},
    "train": {"io", "nets", "checkpoints", "program", "training"},
}
ENTRY_POINTS = ("infer", "train")
# A module of ``app/`` does one job: it imports at most this many project modules.
MAX_APP_IMPORTS = 4


def module_name(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_files() -> list[Path]:
  return sorted((ROOT / "jaxstyle").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
  """Every jaxstyle module ``path`` imports (``from P import m`` names module ``P.m`` when it is one)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.split(".")[0] == "jaxstyle"}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "jaxstyle":
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or \
            (ROOT / Path(*sub.split("."))).is_dir()
        found.add(sub if is_module else node.module)
    elif isinstance(node, ast.ImportFrom) and node.level > 0:
      raise AssertionError(f"{path}: relative import (the project uses absolute imports)")
  return found


def layer_of(module: str) -> str | None:
  parts = module.split(".")
  return parts[0] if parts[0] in ENTRY_POINTS else (parts[1] if len(parts) > 1 else None)


def test_every_library_module_sits_in_a_layer_with_a_docstring():
  for path in library_files():
    rel = path.relative_to(ROOT / "jaxstyle")
    if rel == Path("__init__.py"):
      continue
    assert len(rel.parts) == 2 and rel.parts[0] in ALLOWED, f"{rel}: not inside one of {sorted(ALLOWED)}"
  for layer in ALLOWED.keys() - set(ENTRY_POINTS):
    init = ROOT / "jaxstyle" / layer / "__init__.py"
    assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring"


def upward_imports(path: Path, module: str) -> list[str]:
  here = layer_of(module)
  return [f"{module} ({here}) imports {target} ({layer_of(target)})" for target in sorted(imported_modules(path))
          if here and layer_of(target) not in (None, here, *ALLOWED[here])]


def test_no_layer_imports_a_higher_one():
  files = library_files() + [p for d in ENTRY_POINTS for p in sorted((ROOT / d).rglob("*.py"))]
  upward = [line for path in files for line in upward_imports(path, module_name(path))]
  assert not upward, "\n".join(upward)


def test_app_modules_import_at_most_four_project_modules():
  wide = {module_name(p): sorted(imported_modules(p)) for p in sorted((ROOT / "jaxstyle" / "app").glob("*.py"))}
  wide = {m: imports for m, imports in wide.items() if len(imports) > MAX_APP_IMPORTS}
  assert not wide, "\n".join(f"{m} imports {len(i)}: {', '.join(i)}" for m, i in wide.items())


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
  """A path of modules that comes back to its start, or None (depth-first search)."""
  state: dict[str, int] = {}   # 1: on the current path, 2: done

  def visit(module, path):
    state[module] = 1
    for target in sorted(graph.get(module, ())):
      if state.get(target) == 1:
        return path[path.index(target):] + [target]
      if target not in state and (circle := visit(target, path + [target])):
        return circle
    state[module] = 2
    return None

  return next((c for m in sorted(graph) if m not in state and (c := visit(m, [m]))), None)


def test_the_import_graph_has_no_circle():
  graph = {module_name(p): {m for m in imported_modules(p) if m != module_name(p)} for p in library_files()}
  circle = find_circle(graph)
  assert circle is None, "import circle: " + " -> ".join(circle)
  assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", [module_name(p) for p in library_files()])
def test_every_module_imports(name):
  importlib.import_module(name)


def test_the_checker_sees_an_upward_import(tmp_path):
  """The checks above are not vacuous: an import of ``app`` from ``nets`` is found, also in a function."""
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n  from jaxstyle.app import stylize_files\n  from jaxstyle.io.image_io import ImageError\n")
  assert imported_modules(bad) == {"jaxstyle.app.stylize_files", "jaxstyle.io.image_io"}
  assert upward_imports(bad, "jaxstyle.nets.bad") == [
      "jaxstyle.nets.bad (nets) imports jaxstyle.app.stylize_files (app)",
      "jaxstyle.nets.bad (nets) imports jaxstyle.io.image_io (io)"]
  assert upward_imports(bad, "jaxstyle.app.bad") == []
