"""Imports point down only: a module may import its own package and anything in a strictly lower
layer, and there is no import cycle, between packages or between modules (see DESIGN.md, Layers).

The checker reads every module of the package with :mod:`ast` (no hand-kept list, nothing is
imported): each ``import`` / ``from ... import`` statement that names a module of the package,
at module level and inside functions, with relative imports resolved. ``importlib`` calls with a
string are not import statements and are not checked (the registry's ``ensure_builtins`` uses one
on purpose).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "conceptlab"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
REPO_ROOT = PACKAGE_DIR.parent

# Lower number = lower layer. A module's layer is that of its top-level subpackage or module.
LAYERS: dict[str, int] = {
    "conceptlab": 0,  # the root __init__ is exempt as an importer: it only exposes submodules lazily
    "conceptlab.registry": 0,
    "conceptlab.utils": 0,
    "conceptlab.limits": 0,
    "conceptlab.palette": 0,
    "conceptlab.data": 1,
    "conceptlab.metrics": 1,
    "conceptlab.baselines": 1,
    "conceptlab.backbones": 2,
    "conceptlab.zoo": 3,
    "conceptlab.store": 4,
    "conceptlab.concepts": 5,
    "conceptlab.discovery": 6,
    "conceptlab.analysis": 6,
    "conceptlab.cbm": 7,
    "conceptlab.vectors": 7,
    "conceptlab.diffusion": 7,
    "conceptlab.experiments": 8,
    "conceptlab.cli": 9,
}


@dataclass(frozen=True)
class Edge:
    """One import statement: ``importer`` imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int
    module_level: bool  # runs when the importer is imported (not inside a function)
    type_checking: bool  # inside ``if TYPE_CHECKING:`` (never runs)


@dataclass
class Report:
    unknown: list[str]  # modules whose top-level name is not in the layer table
    upward: list[str]  # imports of the same or a higher layer of a different package
    package_cycles: list[str]
    module_cycles: list[str]

    def problems(self) -> list[str]:
        return self.unknown + self.upward + self.package_cycles + self.module_cycles


# -- reading the package ---------------------------------------------------------------------


def module_files(package_dir: Path, package: str) -> dict[str, Path]:
    """Every module of the package (``__init__`` files named after their package)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path
    return modules


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str], package: str):
        self.module, self.known, self.package = module, known, package
        self.base = module if is_package else module.rpartition(".")[0]
        self.function_depth = 0
        self.type_checking_depth = 0
        self.found: list[tuple[str, int, bool, bool]] = []

    def _add(self, target: str, line: int) -> None:
        if target == self.package or target.startswith(self.package + "."):
            self.found.append((target, line, self.function_depth == 0, self.type_checking_depth > 0))

    def _function(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":
            self.type_checking_depth += 1
            for child in node.body:
                self.visit(child)
            self.type_checking_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.base
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from pkg import name`` pkg
            self._add(submodule if submodule in self.known else source, node.lineno)


def collect_imports(package_dir: Path, package: str, relative_to: Path | None = None) -> list[Edge]:
    """Every import statement in the package that names one of the package's modules."""
    modules = module_files(package_dir, package)
    known = set(modules)
    relative_to = relative_to or package_dir.parent
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visitor = _ImportVisitor(module, path.name == "__init__.py", known, package)
        visitor.visit(tree)
        shown = path.relative_to(relative_to).as_posix() if path.is_relative_to(relative_to) else str(path)
        for target, line, module_level, type_checking in dict.fromkeys(visitor.found):
            edges.append(Edge(module, target, shown, line, module_level, type_checking))
    return edges


# -- checking ------------------------------------------------------------------------------------


def _top(module: str) -> str:
    """The package's top-level subpackage or module that holds ``module`` (or the root)."""
    return ".".join(module.split(".")[:2])


def layer_key(module: str, layers: dict[str, int]) -> str | None:
    """The layer table's entry for a module, None when its top-level name is not in the table."""
    key = _top(module)
    return key if key in layers else None


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative); only components with a cycle (two or more nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def check(package_dir: Path, package: str, layers: dict[str, int], relative_to: Path | None = None) -> Report:
    edges = collect_imports(package_dir, package, relative_to)

    def describe(edge: Edge, importer_key: str | None, imported_key: str | None) -> str:
        where = "" if edge.module_level else " (in a function)"
        if edge.type_checking:
            where = " (under TYPE_CHECKING)"
        return (
            f"{edge.importer} ({layers.get(importer_key, '?')}) -> {edge.imported} "
            f"({layers.get(imported_key, '?')}) at {edge.path}:{edge.line}{where}"
        )

    unknown = sorted(
        f"{module} ({path.relative_to(relative_to or package_dir.parent).as_posix()}): "
        f"{_top(module)} is not in the layer table; add it to LAYERS in tests/test_layers.py"
        for module, path in module_files(package_dir, package).items()
        if layer_key(module, layers) is None
    )

    upward: list[str] = []
    package_graph: dict[str, set[str]] = {}
    package_edges: dict[tuple[str, str], list[str]] = {}
    module_graph: dict[str, set[str]] = {}
    module_edges: dict[tuple[str, str], list[str]] = {}
    for edge in edges:
        if edge.importer == package:  # the root __init__ only exposes submodules lazily
            continue
        src, dst = layer_key(edge.importer, layers), layer_key(edge.imported, layers)
        if src is not None and dst is not None and src != dst and layers[dst] >= layers[src]:
            upward.append(describe(edge, src, dst))
        # packages outside the table (reported above) still take part in the cycle search
        src_node, dst_node = src or _top(edge.importer), dst or _top(edge.imported)
        if src_node != dst_node:
            package_graph.setdefault(src_node, set()).add(dst_node)
            package_edges.setdefault((src_node, dst_node), []).append(describe(edge, src, dst))
        if edge.module_level and not edge.type_checking and edge.importer != edge.imported:
            module_graph.setdefault(edge.importer, set()).add(edge.imported)
            module_edges.setdefault((edge.importer, edge.imported), []).append(describe(edge, src, dst))

    def package_cycles() -> list[str]:
        out = []
        for component in _strongly_connected(package_graph):
            out.append("package cycle " + " -> ".join(_cycle_path(package_graph, component)) + ":")
            for (a, b), descriptions in sorted(package_edges.items()):
                if a not in component or b not in component:
                    continue
                if layers.get(b, 99) >= layers.get(a, -1):  # the imports to remove (or to place)
                    out.extend(f"    {d}" for d in descriptions)
                else:
                    out.append(f"    {a} -> {b}: {len(descriptions)} downward import(s), e.g. {descriptions[0]}")
        return out

    def module_cycles() -> list[str]:
        out = []
        for component in _strongly_connected(module_graph):
            out.append("module-level cycle " + " -> ".join(_cycle_path(module_graph, component)) + ":")
            for (a, b), descriptions in sorted(module_edges.items()):
                if a in component and b in component:
                    out.extend(f"    {d}" for d in descriptions)
        return out

    return Report(
        unknown=unknown,
        upward=sorted(set(upward)),
        package_cycles=package_cycles(),
        module_cycles=module_cycles(),
    )


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first node (breadth-first, inside the component)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return sorted(component)


def _fail_if(lines: list[str], title: str) -> None:
    if lines:
        count = sum(not line.startswith(" ") for line in lines)
        pytest.fail(f"{title} ({count}):\n" + "\n".join(lines), pytrace=False)


# -- the checks on conceptlab --------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> Report:
    return check(PACKAGE_DIR, PACKAGE, LAYERS, relative_to=REPO_ROOT)


def test_every_module_has_a_layer(report):
    _fail_if(report.unknown, "modules outside the layer table")


def test_imports_point_down(report):
    _fail_if(report.upward, "imports of the same or a higher layer of another package")


def test_no_import_cycle_between_packages(report):
    _fail_if(report.package_cycles, "import cycles between packages")


def test_no_import_cycle_between_modules(report):
    _fail_if(report.module_cycles, "module-level import cycles between modules")


def test_the_checker_sees_every_module():
    """The walk finds the modules on disk (guards against a silently empty check)."""
    modules = module_files(PACKAGE_DIR, PACKAGE)
    assert "conceptlab.registry" in modules and "conceptlab.store" in modules
    assert len(modules) == len(list(PACKAGE_DIR.rglob("*.py")))


# -- the checker itself, on a synthetic package ----------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


FAKE_LAYERS = {"fakepkg": 0, "fakepkg.low": 0, "fakepkg.mid": 1, "fakepkg.high": 2}


def test_checker_accepts_a_clean_package(tmp_path):
    _write(
        tmp_path,
        {
            "fakepkg/__init__.py": "",
            "fakepkg/low/__init__.py": "from .a import f\n",
            "fakepkg/low/a.py": "def f():\n    return 1\n",
            "fakepkg/mid/__init__.py": "from fakepkg.low import f\n",
            "fakepkg/high.py": "from .mid import f\nfrom . import low\n\ndef g():\n    from .low import a\n",
        },
    )
    report = check(tmp_path / "fakepkg", "fakepkg", FAKE_LAYERS)
    assert report.problems() == []


def test_checker_catches_upward_import_cycles_and_unknown_modules(tmp_path):
    _write(
        tmp_path,
        {
            "fakepkg/__init__.py": "import fakepkg.high\n",  # exempt: the root
            "fakepkg/low/__init__.py": "",
            # upward, inside a function, relative: low (0) -> high (2)
            "fakepkg/low/a.py": "import os\n\n\ndef f():\n    from ..high import g\n    return g\n",
            "fakepkg/high.py": "from fakepkg.low import a\n\n\ndef g():\n    pass\n",
            # a module-level cycle inside one package: c -> d -> c
            "fakepkg/mid/__init__.py": "",
            "fakepkg/mid/c.py": "from . import d\n",
            "fakepkg/mid/d.py": "import fakepkg.mid.c\n",
            # a cycle that only exists under TYPE_CHECKING is not a runtime cycle
            "fakepkg/mid/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .f import x\n",
            "fakepkg/mid/f.py": "from .e import y\n",
            "fakepkg/extra.py": "",
        },
    )
    report = check(tmp_path / "fakepkg", "fakepkg", FAKE_LAYERS)
    assert report.upward == ["fakepkg.low.a (0) -> fakepkg.high (2) at fakepkg/low/a.py:5 (in a function)"]
    assert report.package_cycles == [
        "package cycle fakepkg.high -> fakepkg.low -> fakepkg.high:",
        "    fakepkg.high -> fakepkg.low: 1 downward import(s), e.g. "
        "fakepkg.high (2) -> fakepkg.low.a (0) at fakepkg/high.py:1",
        "    fakepkg.low.a (0) -> fakepkg.high (2) at fakepkg/low/a.py:5 (in a function)",
    ]
    assert report.module_cycles == [
        "module-level cycle fakepkg.mid.c -> fakepkg.mid.d -> fakepkg.mid.c:",
        "    fakepkg.mid.c (1) -> fakepkg.mid.d (1) at fakepkg/mid/c.py:1",
        "    fakepkg.mid.d (1) -> fakepkg.mid.c (1) at fakepkg/mid/d.py:1",
    ]
    assert len(report.unknown) == 1 and report.unknown[0].startswith("fakepkg.extra (fakepkg/extra.py)")
    assert "add it to LAYERS" in report.unknown[0]
