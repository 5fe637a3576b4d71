"""The payattn import graph has no cycle, and every module imports.

The graph is read from the source (every import statement, those inside functions too: a
deferred import is still a dependency; `if TYPE_CHECKING:` blocks are not). How names resolve:

- `import payattn.a.b` and `from payattn.a import b` where b is a submodule: payattn.a.b.
- `from payattn.a import name` where name is not a submodule: payattn.a (its __init__), unless
  payattn.a is a lazy package face, whose `_EXPORTS` table maps the name to the module that
  defines it (a submodule, or another payattn module by full name); then that module. A lazy face also depends on every module its table names
  (it imports them on first use).
- Importing payattn.a.b runs payattn/a/__init__.py first; that implicit edge is not counted,
  so an eager package __init__ is in a cycle only when one of its submodules imports names
  from the package itself.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "payattn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in `tree`, at any depth, outside `if TYPE_CHECKING:` blocks."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A lazy package face's module-level `_EXPORTS = {"name": "submodule", ...}`, else {}."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS"
                                                 for t in node.targets)):
            return ast.literal_eval(node.value)
    return {}


def _lazy_target(package: str, module: str) -> str:
    """A lazy face's table names a submodule, or another module by its full name."""
    return module if "." in module else f"{package}.{module}"


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """payattn module -> the payattn modules it imports."""
    modules = _modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in modules.items()}
    lazy = {name: _lazy_exports(tree) for name, tree in trees.items() if modules[name].name == "__init__.py"}

    def resolve(package: str, name: str) -> str:
        if f"{package}.{name}" in modules:
            return f"{package}.{name}"
        if name in lazy.get(package, {}):
            return _lazy_target(package, lazy[package][name])
        return package

    graph: dict[str, set[str]] = {}
    for module, tree in trees.items():
        targets = {_lazy_target(module, target) for target in lazy.get(module, {}).values()}
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            else:
                source = _absolute(module, modules[module], node)
                targets |= {resolve(source, alias.name) for alias in node.names}
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_reads_every_kind_of_import():
    graph = import_graph()
    assert "payattn.export.verify" in graph["payattn.export.appform"]  # from payattn.export import verify
    assert "payattn.export.main" in graph["payattn.export"]  # the lazy face loads its table's modules
    assert "payattn.export.verify" not in graph["payattn.export.manifest"]  # only under TYPE_CHECKING
    assert "payattn.train" in graph["payattn.sweep"]  # imported inside a function
    assert "payattn.export.main" in graph["payattn.pipeline"]  # from payattn.export import export (lazy)
    assert "payattn.mechanisms" in graph["payattn.export"]  # the face's parse_precisions, by full name


def test_cycle_finder_names_the_cycle_in_order():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_runtime_imports_nothing_above_it():
    """payattn.runtime is copied to devices as it is: it may import itself and payattn's root only."""
    graph = import_graph()
    upward = {f"{module} -> {target}" for module, targets in graph.items() if module.startswith("payattn.runtime")
              for target in targets if not (target == "payattn" or target.startswith("payattn.runtime"))}
    assert not upward, "payattn.runtime imports from above it: " + ", ".join(sorted(upward))


def test_every_module_imports():
    """Each module imports in a fresh interpreter (one for all, so the heavy ones load once)."""
    names = sorted(_modules())
    code = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException:\n"
        "        failed[name] = traceback.format_exc(limit=-3)\n"
        "import payattn\n"
        "print(json.dumps({'from': payattn.__file__, 'failed': failed}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(names)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["from"]).resolve() == PACKAGE / "__init__.py"  # this checkout, not another
    failed = answer["failed"]
    assert not failed, "modules that fail to import:\n" + "\n".join(f"{n}:\n{tb}" for n, tb in failed.items())
