"""The import floors of the project hold: no import goes up a floor, and none closes a cycle.

The floors, bottom to top (a module imports only from its own floor or the ones below):

0. ``utils``: file I/O, interrupts, defaults, compatibility switches, metrics, complexity, checkpoints, the
   configuration loader. No project import.
1. ``models``, ``losses``, ``data``: the networks, the loss terms, the data sets (with their sensors). Each
   imports ``utils`` only; imports between them are allowed while they form no cycle (today there are none).
2. ``engine``: training, evaluation, inference, deployment; it wires floor 1 together.
3. ``benchmarks``: measurements and benches over the library.
4. The scripts at the repository root: ``train_CSAKD.py``, ``test_CSAKD.py``, ``export_CSAKD.py``.

Besides the floors, no cycle: neither between packages (of one floor) nor between the modules of one package
(``data.spectral`` → ``data.sensors`` → ``data.spectral`` fails even though both are on floor 1). A package's
``__init__`` counts as a module of its package, so a submodule importing names its own ``__init__`` re-exports
from its siblings closes a cycle too.

Every import counts, wherever it stands: module level, inside a function (lazy imports for optional
dependencies), under ``if TYPE_CHECKING:``, in ``try``. Relative imports are resolved against the importing
file. The test reads the sources with :mod:`ast` and imports no project code, so it runs in well under a second.

:data:`EXEMPT` lists the upward imports that are being removed, each with its reason; the list can only shrink:
an entry that no longer matches an upward import fails the test, so it must be deleted with the import.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The floors, bottom to top: package folders and script module names.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("models", "losses", "data"),
    ("engine",),
    ("benchmarks",),
    ("train_CSAKD", "test_CSAKD", "export_CSAKD"),
)
FLOOR_OF = {name: level for level, names in enumerate(FLOORS) for name in names}
#: Top-level names of the repository that no scanned module may import (they are not floors of the library).
NOT_IMPORTABLE = ("tests",)

#: (importing file, imported module) → why the upward import is still there. Exempt imports are left out of the
#: cycle search too. None since the options moved beside their owners (issue 19 item 1).
EXEMPT: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One project import: ``source`` imports module ``target`` at ``path``:``line`` (``text`` as written)."""

    source: str
    target: str
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}  ({self.source} → {self.target})"


def _module_files() -> dict[str, Path]:
    """Module name → file for every module of the floors (packages recursively, the scripts)."""
    files = {}
    for name in FLOOR_OF:
        folder = ROOT / name
        if folder.is_dir():
            for path in sorted(folder.rglob("*.py")):
                parts = list(path.relative_to(ROOT).with_suffix("").parts)
                files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        elif (ROOT / f"{name}.py").is_file():
            files[name] = ROOT / f"{name}.py"
    return files


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from … import`` names (relative levels resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def _project_targets(names: list[str], modules: dict[str, Path]) -> list[str]:
    """The project modules among dotted ``names``: each one's longest prefix that is a module of the floors,
    or the name itself for a top-level name of the repository that is not a floor."""
    targets = []
    for name in names:
        top = name.split(".")[0]
        if top in NOT_IMPORTABLE:
            targets.append(name)
        elif top in FLOOR_OF:
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            targets.append(name)
    return targets


def _imports_of(module: str, path: Path, modules: dict[str, Path], source: str | None = None) -> list[Import]:
    """Every project import in ``path`` (or in ``source`` read as that file), function-local and
    ``TYPE_CHECKING`` ones included."""
    found = []
    rel = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text, filename=rel)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name`` the package pkg
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(_project_targets(names, modules)):
            if target != module:
                found.append(Import(module, target, rel, node.lineno, ast.unparse(node)))
    return found


@functools.cache
def _all_imports() -> tuple[Import, ...]:
    """Every project import of every module of the floors (read once per test session)."""
    modules = _module_files()
    return tuple(imp for module, path in modules.items() for imp in _imports_of(module, path, modules))


def _top(module: str) -> str:
    return module.split(".")[0]


def _upward(imp: Import) -> bool:
    target = _top(imp.target)
    return target in NOT_IMPORTABLE or FLOOR_OF[target] > FLOOR_OF[_top(imp.source)]


def _exempt(imp: Import) -> bool:
    return (imp.path, imp.target) in EXEMPT


def _cycles(edges: list[tuple[str, str, Import]]) -> list[list[Import]]:
    """The imports inside each strongly connected component of more than one node (Tarjan, iterative)."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in edges:
        graph[a].append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
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
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return [[imp for a, b, imp in edges if a in c and b in c] for c in components]


def _report(title: str, imports: list[Import]) -> str:
    return title + "\n" + "\n".join(f"  {imp}" for imp in imports)


def _package_report(imports: list[Import]) -> str:
    """One line per (package → package) arrow of a package cycle: its first import and how many more."""
    arrows: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        arrows[_top(imp.source), _top(imp.target)].append(imp)
    lines = [f"  {a} → {b}: {found[0]}" + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
             for (a, b), found in sorted(arrows.items())]
    return "import cycle between packages:\n" + "\n".join(lines)


def test_every_top_level_package_has_a_floor():
    """A new top-level package or script must be given a floor here, or its imports would go unchecked."""
    found = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    found |= {p.stem for p in ROOT.glob("*.py")}
    missing = sorted(found - set(FLOOR_OF) - set(NOT_IMPORTABLE))
    if missing:
        pytest.fail(f"top-level packages or scripts without a floor: {missing}; add them to FLOORS in "
                    f"tests/test_layers.py")


def test_no_import_goes_up_a_floor():
    upward = [imp for imp in _all_imports() if _upward(imp) and not _exempt(imp)]
    if upward:
        pytest.fail(_report("imports that go up a floor (see the floors in tests/test_layers.py):", upward))


def test_every_exemption_is_still_needed():
    used = {(imp.path, imp.target) for imp in _all_imports() if _upward(imp)}
    stale = [f"  {path} → {target} ({reason})" for (path, target), reason in EXEMPT.items()
             if (path, target) not in used]
    if stale:
        pytest.fail("exempt imports that are gone; delete their entries from EXEMPT:\n" + "\n".join(stale))


def test_no_cycle_between_packages():
    edges = [(_top(i.source), _top(i.target), i) for i in _all_imports()
             if _top(i.source) != _top(i.target) and not _exempt(i)]
    cycles = _cycles(edges)
    if cycles:
        pytest.fail("\n".join(_package_report(c) for c in cycles))


def test_no_cycle_between_modules_of_a_package():
    edges = [(i.source, i.target, i) for i in _all_imports() if _top(i.source) == _top(i.target)]
    cycles = _cycles(edges)
    if cycles:
        pytest.fail("\n".join(_report("import cycle between modules of one package:", c) for c in cycles))


def test_the_scan_sees_every_form_of_import():
    """Module-level, relative, ``TYPE_CHECKING``, function-local and ``import a.b`` forms all count, each resolved
    to the module it loads (a snippet read as if it were ``data/formats.py``)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import data.spectral\n"
        "from . import spectral\n"
        "from .sensors import get_sensor\n"
        "from . import DATA_DEFAULTS\n"
        "if TYPE_CHECKING:\n"
        "    from ..models import DTS\n"
        "def f():\n"
        "    import torch, engine.train\n"
    )
    modules = _module_files()
    found = _imports_of("data.formats", modules["data.formats"], modules, source)
    assert sorted((imp.line, imp.target) for imp in found) == [
        (2, "data.spectral"), (3, "data.spectral"), (4, "data.sensors"), (5, "data"), (7, "models"),
        (9, "engine.train")]


def test_the_cycle_search_finds_each_cycle_and_only_its_imports():
    edges = [(a, b, Import(a, b, f"{a}.py", 1, f"import {b}"))
             for a, b in (("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"), ("d", "e"), ("e", "d"), ("f", "f"))]
    found = sorted(sorted((imp.source, imp.target) for imp in cycle) for cycle in _cycles(edges))
    assert found == [[("a", "b"), ("b", "c"), ("c", "a")], [("d", "e"), ("e", "d")]]
