"""Guard of the layers: the import graph of pipeline/, from the source.

Every import counts, function-local ones included (they run too): the graph
must have no cycle, and dependencies point down only: cli -> driver ->
engines (beam, tfdata) -> stages -> transforms. A stage imports neither
`apache_beam` nor an engine; the tfdata engine never imports `apache_beam`;
`transforms` never imports `pipeline`.
"""

import ast
import pathlib

import pytest
from repo_paths import ROOT

PIPELINE = pathlib.Path(ROOT) / "pipeline"
TRANSFORMS = pathlib.Path(ROOT) / "transforms"

# Layer of a module, by name prefix (longest first); a module may import its
# own layer (no cycle) or a lower one.
LAYERS = [
    ("pipeline.__main__", 5),
    ("pipeline.cli", 4),
    ("pipeline.driver", 3),
    ("pipeline.beam", 2),
    ("pipeline.tfdata", 2),
    ("pipeline.reader", 1),
    ("pipeline.numpy_reader", 1),
    ("pipeline.stages", 0),
]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def _import_nodes(path: pathlib.Path, name: str):
    """(base module, [names]) of every import of `path`, anywhere in it (`import
    a.b` gives ("a.b", []), `from a import b, c` gives ("a", ["b", "c"]))."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def imported_names(path: pathlib.Path, name: str) -> set[str]:
    """Every dotted name `path` imports (`from a import b`: `a` and `a.b`)."""
    found = set()
    for base, names in _import_nodes(path, name):
        found.add(base)
        found.update(f"{base}.{n}" for n in names)
    return found


def graph() -> dict[str, set[str]]:
    """pipeline module -> the pipeline modules it imports (`from a import b`:
    the module a.b if there is one, else a)."""
    known = modules(PIPELINE)
    edges = {}
    for name, path in known.items():
        targets = set()
        for base, names in _import_nodes(path, name):
            submodules = {f"{base}.{n}" for n in names} & known.keys()
            if submodules:
                targets |= submodules
            if base in known and (not names or len(submodules) < len(names)):
                targets.add(base)
        edges[name] = targets - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer(name: str) -> int | None:
    for prefix, rank in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return None  # the package itself: the lazy public API, above everything


def group(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_graph_sees_function_local_imports():
    edges = graph()
    # pipeline/__init__.py imports the driver only inside `run`.
    assert "pipeline.driver" in edges["pipeline"]
    # The driver imports each engine only inside `run`.
    assert {"pipeline.beam.job", "pipeline.tfdata.engine"} <= edges["pipeline.driver"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_pipeline_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_dependencies_point_down_only():
    wrong = []
    for src, targets in graph().items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if a is None:  # the package's lazy API may name any layer
                continue
            same = group(src) == group(dst)
            if b is None or (a < b) or (a == b and not same):
                wrong.append(f"{src} -> {dst}")
    assert wrong == []


@pytest.mark.parametrize(
    "prefix, forbidden",
    [
        ("pipeline.stages", ("apache_beam", "pipeline.beam", "pipeline.tfdata")),
        ("pipeline.stages", ("pipeline.driver", "pipeline.cli")),
        ("pipeline.tfdata", ("apache_beam", "pipeline.beam")),
        ("pipeline.beam", ("pipeline.tfdata",)),
        ("transforms", ("pipeline", "apache_beam")),
    ],
)
def test_layer_does_not_import(prefix, forbidden):
    root = TRANSFORMS if prefix == "transforms" else PIPELINE
    wrong = []
    for name, path in modules(root).items():
        if not (name == prefix or name.startswith(prefix + ".")):
            continue
        for imported in imported_names(path, name):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_no_private_name_is_imported_across_modules():
    wrong = []
    for name, path in modules(PIPELINE).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "pipeline"
            ):
                wrong += [
                    f"{name}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert wrong == []
