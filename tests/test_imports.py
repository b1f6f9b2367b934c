"""The stages meet only through what each package exports, each floor imports only the floors
below it (docs/ARCHITECTURE.md, "Floors"), and no modules import each other in a circle, counting
the package ``__init__`` an import runs (read from the source with ``ast``; nothing is
imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "extraction", "graphs", "training")
# Each floor and what it may import (besides itself): the most specific prefix of a module rules.
FLOORS = {
    "common": (),
    "extraction.store": ("common",),
    "extraction": ("common", "extraction"),
    "graphs": ("common", "extraction.store"),
    "training": ("common", "extraction.store", "graphs"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a module but those under ``if TYPE_CHECKING:`` (never run)."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending += [child for child in ast.iter_child_nodes(node) if not is_type_checking(child)]
    return nodes


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every absolute import of our packages in a file, at any depth (a
    function-level import still ties two modules together; a type-checking-only one does not)."""
    found = []
    for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return [(module, names) for module, names in found if module.split(".")[0] in PACKAGES]


def exported(path: Path) -> set[str]:
    """The names in a package ``__init__``'s ``__all__``."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def export_violations(known: dict[str, Path]) -> list[str]:
    """Each import of a module of another package that is not that package's exported name."""
    wrong = []
    for name, path in known.items():
        for module, names in imports(path):
            if module.split(".")[0] == name.split(".")[0]:
                continue  # inside one package, any module may be used
            target = known.get(module)
            if target is None or target.name != "__init__.py":
                wrong.append(f"{name} imports {module}, which is no package's public face")
                continue
            hidden = sorted(set(names) - exported(target))
            if hidden:
                wrong.append(f"{name} imports {hidden} from {module}, which does not export them")
    return wrong


def write_modules(root: Path, files: dict[str, str]) -> dict[str, Path]:
    """Fake modules (relative path → source) under ``root``: module name → path."""
    known = {}
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        known[module_name(path, root)] = path
    return known


def floor(module: str) -> str:
    """The floor a module stands on: the longest :data:`FLOORS` prefix of its name."""
    return max((f for f in FLOORS if module == f or module.startswith(f"{f}.")), key=len)


def floor_violations(known: dict[str, Path]) -> list[str]:
    """Each import of a module above (or beside) the importer's floor."""
    wrong = []
    for name, path in known.items():
        own = floor(name)
        allowed = (own, *FLOORS[own])
        for module, _ in imports(path):
            if not any(module == f or module.startswith(f"{f}.") for f in allowed):
                wrong.append(f"{name} imports {module}, above its floor {own}")
    return wrong


def test_each_floor_imports_only_the_floors_below():
    assert floor_violations(modules()) == []


def test_an_import_from_above_the_floor_is_reported(tmp_path):
    files = {
        "extraction/store/a.py": "from extraction.labels import x\nfrom common import y\n",
        "graphs/b.py": "from extraction import run\nfrom extraction.store import z\n",
    }
    known = write_modules(tmp_path, files)
    assert sorted(floor_violations(known)) == [
        "extraction.store.a imports extraction.labels, above its floor extraction.store",
        "graphs.b imports extraction, above its floor graphs",
    ]


def test_a_package_imports_only_what_a_neighbour_exports():
    assert export_violations(modules()) == []


def test_a_private_module_or_an_unexported_name_is_reported(tmp_path):
    files = {
        "graphs/__init__.py": "from graphs.a import shown\n__all__ = ['shown']\n",
        "graphs/a.py": "shown = hidden = 1\n",
        "training/b.py": "from graphs import shown, hidden\nfrom graphs.a import shown\n",
        "training/c.py": "if TYPE_CHECKING:\n    from graphs.a import x\n",
    }
    known = write_modules(tmp_path, files)
    assert sorted(export_violations(known)) == [
        "training.b imports ['hidden'] from graphs, which does not export them",
        "training.b imports graphs.a, which is no package's public face",
    ]


def outer_packages(module: str, importer: str) -> list[str]:
    """The packages whose ``__init__`` importing ``module`` runs first, from ``importer``: its
    ancestors, except those that hold the importer (already run by the time it runs)."""
    parts = module.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [a for a in ancestors if importer != a and not importer.startswith(f"{a}.")]


def import_graph(known: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module → the modules of ours it imports (a ``from package import name`` counts as an
    import of the package, or of its submodule ``name``), with the package ``__init__`` files
    each import runs on the way (``extraction.store.layout`` runs ``extraction.store``)."""
    known = modules() if known is None else known
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = set()
        for module, names in imports(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            edges.update(targets or ([module] if module in known else []))
            edges.update(p for p in outer_packages(module, name) if p in known)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    """The store's old hidden cycle: its ``__init__`` imports the reader, the reader the trace
    module outside it, and that module a store submodule, which runs the store's ``__init__``."""
    files = {
        "extraction/__init__.py": "",
        "extraction/store/__init__.py": "from extraction.store.reader import TraceStore\n",
        "extraction/store/reader.py": "from extraction.trace import Trace\n",
        "extraction/store/layout.py": "",
        "extraction/trace.py": "def f():\n    from extraction.store.layout import unpack\n",
    }
    known = write_modules(tmp_path, files)
    assert find_cycle(import_graph(known)) == [
        "extraction.store",
        "extraction.store.reader",
        "extraction.trace",
        "extraction.store",
    ]


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_test_file_imports_shared_helpers_only_from_the_helpers_module():
    """Helpers the tests share live in ``tests/helpers.py``; no test file imports another."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("tests.") and module != "tests.helpers":
                wrong.append(f"{path.name} imports {module}")
    assert wrong == []
