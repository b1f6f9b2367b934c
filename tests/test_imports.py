"""The stages meet only through what each package exports, and no modules import each other in
a circle (read from the source with ``ast``; nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("extraction", "graphs", "training")


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


def test_a_package_imports_only_what_a_neighbour_exports():
    assert export_violations(modules()) == []


def test_a_private_module_or_an_unexported_name_is_reported(tmp_path):
    files = {
        "graphs/__init__.py": "from graphs.a import shown\n__all__ = ['shown']\n",
        "graphs/a.py": "shown = hidden = 1\n",
        "training/b.py": "from graphs import shown, hidden\nfrom graphs.a import shown\n",
        "training/c.py": "if TYPE_CHECKING:\n    from graphs.a import x\n",
    }
    known = {}
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        known[module_name(path, tmp_path)] = path
    assert sorted(export_violations(known)) == [
        "training.b imports ['hidden'] from graphs, which does not export them",
        "training.b imports graphs.a, which is no package's public face",
    ]


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (a ``from package import name`` counts as an
    import of the package, or of its submodule ``name``)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = set()
        for module, names in imports(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            edges.update(targets or ([module] if module in known else []))
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


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
