"""The package layout, checked statically: the import graph of every module under fcn_keras/.

The modules are found by walking the directory, so packages added later
(``cli/``, ``zoo/``, ``caffe/``, ``training/``, ...) are checked without editing
this file. Imports are read from the source with :mod:`ast` (nothing is
imported), at module level and inside functions; ``if TYPE_CHECKING:`` imports
never run and count for the layering rules only. Every failure names the
importing module, its line, and whether the import runs at module level or
inside a function.

Rules (docs/architecture.md):
    (a) no import cycles: none at module level, and none closed by an import inside a function
        (a lazy import that "avoids" a cycle is still two modules that need each other);
    (b) fcn_keras/files.py, the bottom layer, imports nothing from fcn_keras;
    (c) fcn_keras.data never reaches training, export, cli, zoo or demo;
    (d) fcn_keras.export never reaches training, cli or demo;
    (e) nothing imports fcn_keras.cli or fcn_keras.demo, except that cli's demo subcommand module
        may import the demo's entry point ``run_demo`` (and nothing else of the demo);
    (f) fcn_keras.models imports only keras, numpy, the standard library, and fcn_keras.models,
        fcn_keras.preprocessing and fcn_keras.palette.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import sys
from pathlib import Path

import pytest

PACKAGE = "fcn_keras"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (a module name, maybe outside fcn_keras)."""

    source: str
    target: str
    line: int
    function: str | None  # the enclosing function, None at module level
    type_checking: bool = False
    names: tuple[str, ...] = ()  # for `from target import a, b`

    def __str__(self) -> str:
        where = "at module level" if self.function is None else f"inside {self.function}()"
        kind = " (TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.source}:{self.line} imports {self.target} {where}{kind}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module under fcn_keras/ (packages by their ``__init__``), by dotted name."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def _resolve(source: str, is_package: bool, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(name: str, path: Path) -> list[Import]:
    known = modules()
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.AST, function: str | None, type_checking: bool, names=()) -> None:
        found.append(Import(name, target, node.lineno, function, type_checking, tuple(names)))

    def visit(node: ast.AST, function: str | None, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, function, type_checking)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.module, node.level)
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{base}.{n}" in known]
            for n in submodules:  # `from fcn_keras.data import splits` imports the module fcn_keras.data.splits
                add(f"{base}.{n}", node, function, type_checking)
            if len(submodules) < len(names):
                add(base, node, function, type_checking, [n for n in names if n not in submodules])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value, node, function, type_checking)  # importlib.import_module("fcn_keras.x")
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, function, True)
            for child in node.orelse:
                visit(child, function, type_checking)
            return
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(node, ast.Lambda):
            inner = function or "<lambda>"
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), None, False)
    return found


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import in fcn_keras/, in module order."""
    return tuple(edge for name, path in modules().items() for edge in _imports_of(name, path))


def _internal(edges) -> list[Import]:
    return [e for e in edges if e.target == PACKAGE or e.target.startswith(PACKAGE + ".")]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _describe_cycles(edges: list[Import]) -> str:
    lines = []
    for component in _cycles(edges):
        members = set(component)
        lines.append("cycle: " + " <-> ".join(component))
        lines += [f"    {e}" for e in edges if e.source in members and e.target in members and e.source != e.target]
    return "\n".join(lines)


def _reach(start_package: str, edges: list[Import]) -> dict[str, list[Import]]:
    """Every fcn_keras module reachable from the modules of ``start_package``, with one chain of imports each."""
    by_source: dict[str, list[Import]] = {}
    for e in edges:
        by_source.setdefault(e.source, []).append(e)
    chains: dict[str, list[Import]] = {m: [] for m in modules() if _within(m, start_package)}
    queue = list(chains)
    while queue:
        node = queue.pop(0)
        for e in by_source.get(node, ()):
            if e.target not in chains:
                chains[e.target] = chains[node] + [e]
                queue.append(e.target)
    return chains


def _forbidden_reach(package: str, forbidden: tuple[str, ...]) -> list[str]:
    chains = _reach(package, _internal(imports()))
    return [f"{package} reaches {target}:\n" + "\n".join(f"    {e}" for e in chain)
            for target, chain in sorted(chains.items())
            if chain and any(_within(target, f"{PACKAGE}.{f}") for f in forbidden)]


def test_the_graph_covers_every_module():
    names = modules()
    assert {"fcn_keras", "fcn_keras.files", "fcn_keras.data", "fcn_keras.data.detect", "fcn_keras.models"} <= set(names)
    assert len(names) == len(list(ROOT.rglob("*.py"))) - len(list(ROOT.rglob("__pycache__/*.py")))
    assert any(e.target == "fcn_keras.data.detect" for e in imports()), "the parser misses imports"


def test_no_import_cycles_at_module_level():
    edges = [e for e in _internal(imports()) if e.function is None and not e.type_checking]
    cycles = _describe_cycles(edges)
    assert not cycles, f"import cycles at module level:\n{cycles}"


def test_no_import_cycles_through_imports_inside_functions():
    """A function-level import that closes a cycle hides it from Python, not from the design."""
    edges = [e for e in _internal(imports()) if not e.type_checking]
    cycles = _describe_cycles(edges)
    assert not cycles, f"import cycles (counting imports inside functions, marked as such):\n{cycles}"


def test_files_is_the_bottom_layer():
    upward = [str(e) for e in _internal(imports()) if e.source == "fcn_keras.files"]
    assert not upward, "fcn_keras/files.py must import nothing from fcn_keras:\n" + "\n".join(upward)


@pytest.mark.parametrize("package, forbidden", [
    ("fcn_keras.data", ("training", "export", "cli", "zoo", "demo")),
    ("fcn_keras.export", ("training", "cli", "demo")),
], ids=["data", "export"])
def test_lower_layers_do_not_reach_upward(package, forbidden):
    problems = _forbidden_reach(package, forbidden)
    assert not problems, "\n".join(problems)


def _allowed_demo_import(e: Import) -> bool:
    """cli's demo subcommand module (fcn_keras.cli.<...demo...>) importing only run_demo."""
    subcommand = e.source.startswith(f"{PACKAGE}.cli.") and "demo" in e.source.rsplit(".", 1)[-1]
    return subcommand and e.target == f"{PACKAGE}.demo" and e.names == ("run_demo",)


def test_nothing_imports_the_cli_or_the_demo():
    problems = []
    for e in _internal(imports()):
        if _within(e.target, f"{PACKAGE}.cli") and not _within(e.source, f"{PACKAGE}.cli"):
            problems.append(f"{e}: only the cli imports the cli")
        if (_within(e.target, f"{PACKAGE}.demo") and not _within(e.source, f"{PACKAGE}.demo")
                and not _allowed_demo_import(e)):
            problems.append(f"{e} {list(e.names)}: only cli's demo subcommand module may import, "
                            f"and only `from fcn_keras.demo import run_demo`")
    assert not problems, "\n".join(problems)


def test_models_import_only_keras_numpy_and_the_standard_library():
    allowed_external = {"keras", "numpy", "__future__"} | set(sys.stdlib_module_names)
    allowed_internal = ("fcn_keras.models", "fcn_keras.preprocessing", "fcn_keras.palette")
    problems = []
    for e in imports():
        if not _within(e.source, f"{PACKAGE}.models"):
            continue
        top = e.target.split(".")[0]
        if top == PACKAGE:
            if not any(_within(e.target, a) for a in allowed_internal):
                problems.append(str(e))
        elif top not in allowed_external:
            problems.append(str(e))
    assert not problems, "fcn_keras.models may import only keras, numpy, the standard library and " \
                         f"{', '.join(allowed_internal)}:\n" + "\n".join(problems)


def test_the_checker_sees_cycles_and_chains(tmp_path):
    """The helpers themselves, on made-up edges: a cycle through a function-level import is found."""
    edges = [Import("fcn_keras.a", "fcn_keras.b", 1, None), Import("fcn_keras.b", "fcn_keras.a", 7, "load"),
             Import("fcn_keras.b", "fcn_keras.c", 2, None)]
    assert _cycles(edges) == [["fcn_keras.a", "fcn_keras.b"]]
    assert _cycles([e for e in edges if e.function is None]) == []
    assert "fcn_keras.b:7 imports fcn_keras.a inside load()" in _describe_cycles(edges)
    assert _resolve("fcn_keras.data.check", False, "decode", 1) == "fcn_keras.data.decode"
    assert _resolve("fcn_keras.data", True, None, 2) == "fcn_keras"
