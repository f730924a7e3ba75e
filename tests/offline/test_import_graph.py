"""The project's Python imports in one direction: no module imports, however indirectly, a
module that imports it back, whether at the top or inside a function (a function-local import
only hides a cycle); and the distributions in layers: the target package imports no other, the
RSE model only the target package's, the toolkit any. The packages are the toolkit, the target
package, the RSE model and the layer's shared modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from parsec_demo.paths import PROJECT_ROOT

#: Each package's directory, and the layer's shared modules (top-level modules).
PACKAGES = {
    "parsec_demo": PROJECT_ROOT / "host/parsec_demo",
    "parsec_service": PROJECT_ROOT / "target/parsec_service",
    "parsec_rse_model": PROJECT_ROOT / "rse-model/parsec_rse_model",
}
LAYER_LIB = PROJECT_ROOT / "meta-parsec-demo/lib"


def modules() -> dict[str, Path]:
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            if path.name.endswith("_pb2.py"):
                continue
            parts = path.relative_to(directory).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    for path in LAYER_LIB.glob("parsec_demo_*.py"):
        found[path.stem] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project's modules that ``name`` (at ``path``) imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from X import y``: y is a module of X's (the package itself only runs as
            # its parent, as every import of a submodule does), or a name in X.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(name, path, known)) for name, path in known.items()}


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_demo_imports_downwards() -> None:
    """results < local_server, mutual_tls < host, vm: the modes on top, nothing below them
    imports them."""
    graph = import_graph()
    assert "parsec_demo.demo.host" not in graph["parsec_demo.demo.vm"]
    for lower in ("results", "local_server", "mutual_tls"):
        assert not graph[f"parsec_demo.demo.{lower}"] & {
            "parsec_demo.demo.host",
            "parsec_demo.demo.vm",
        }


def test_the_layer_s_shared_modules_import_only_each_other() -> None:
    """They run under BitBake and testimage, where the toolkit is not importable."""
    graph = import_graph()
    for name in graph:
        if name.startswith("parsec_demo_"):
            assert all(target.startswith("parsec_demo_") for target in graph[name]), name


def test_the_distributions_import_downwards() -> None:
    """What each distribution may import of the project: the target package and the RSE model
    are built and installed without the toolkit (the layer's recipes), the model with the target
    package beside it."""
    allowed = {
        "parsec_service": {"parsec_service"},
        "parsec_rse_model": {"parsec_rse_model", "parsec_service"},
    }
    for name, targets in import_graph().items():
        top = name.split(".")[0]
        if top in allowed:
            outside = {t for t in targets if t.split(".")[0] not in allowed[top]}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
