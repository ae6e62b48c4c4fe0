"""The import graph of genesis_tf: no cycle, and no import that runs up a layer.

The graph is read from the source with `ast` (nothing is imported): every `import` and
`from ... import` of a genesis_tf module, at module level and inside functions alike (the
binaries import lazily so that --help stays fast; a lazy import is still a dependency).
`from genesis_tf.x import y` is an edge to genesis_tf.x.y when that is a module, else to
genesis_tf.x. A package's __init__ counts as the module named after the package.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "genesis_tf"

# The layers of genesis_tf, bottom to top: a module may import modules of its own layer or
# below, never above. A name stands for that module and everything under it; the longest
# matching name decides (so export.__main__ is a binary while export is a library).
# "genesis_tf" itself is the package's __init__ (its version) only.
LAYERS = [
    # 0: foundations, importing no other genesis_tf layer
    ["genesis_tf", "genesis_tf.errors", "genesis_tf.progress", "genesis_tf.distributions",
     "genesis_tf.geco", "genesis_tf.layers", "genesis_tf.gin_files"],
    # 1: the models and their contract
    ["genesis_tf.models"],
    # 2: input pipelines and dataset registry
    ["genesis_tf.data"],
    # 3: what a run directory holds; NumPy pictures; every score
    ["genesis_tf.runs", "genesis_tf.run_safety", "genesis_tf.run_lock",
     "genesis_tf.plotting.grids", "genesis_tf.metrics"],
    # 4: libraries built on all of that
    ["genesis_tf.training", "genesis_tf.plotting", "genesis_tf.traversal",
     "genesis_tf.export"],
    # 5: binaries (may import anything) and what only binaries use
    ["genesis_tf.train", "genesis_tf.evaluate", "genesis_tf.visualise", "genesis_tf.demo",
     "genesis_tf.export.__main__", "genesis_tf.tools", "genesis_tf.build_dataset",
     "genesis_tf.convert_reference", "genesis_tf.cli"],
]

# Edges allowed to run up a layer (none: the refactor of issue 29 removed the last). An
# entry whose edge is gone fails the test, so the list cannot go stale.
KNOWN_UPWARD = set()


def _modules():
    """{dotted name: path} of every module of the package."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known(name, modules):
    """The module `name` names, or the nearest enclosing package that exists."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else None


def _imports(name, path, modules):
    """The genesis_tf modules that module `name` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative: from .x import y / from .. import y
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([source] if source else []))
            for alias in node.names:
                dotted = f"{source}.{alias.name}"
                found.add(dotted if dotted in modules else _known(source, modules))
    return {m for m in found if m and m.split(".")[0] == PACKAGE and m != name}


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def layer_of(module):
    """The index in LAYERS of the longest name that is `module` or contains it."""
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            # The package's own name stands for its __init__ only.
            if module == name or (name != PACKAGE and module.startswith(name + ".")):
                if best is None or len(name) > len(best[1]):
                    best = (index, name)
    return None if best is None else best[0]


def find_cycles(graph):
    """One cycle [a, b, ..., a] through each strongly connected component (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):  # recursion depth ≤ number of modules (~70)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph, component):
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]] & component):
            if target == start:
                return path + [start]
            if target not in seen:
                seen.add(target)
                paths.append(path + [target])
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_the_import_graph_has_no_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_module_has_a_layer():
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"


def test_no_import_runs_up_a_layer():
    graph = import_graph()
    upward = {(source, target) for source, targets in graph.items() for target in targets
              if layer_of(target) is not None and layer_of(source) is not None
              and layer_of(target) > layer_of(source)}
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, "imports that run up a layer (importer in layer N -> module in a " \
        "higher layer):\n" + "\n".join(
            f"{s} (layer {layer_of(s)}) -> {t} (layer {layer_of(t)})" for s, t in new)
    fixed = sorted(KNOWN_UPWARD - upward)
    assert not fixed, f"these edges are gone: remove them from KNOWN_UPWARD: {fixed}"


def test_the_checks_catch_what_they_are_for():
    """The cycle finder and the layer rule on small graphs with known answers, so that a
    test above cannot pass by finding nothing."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("genesis_tf.export.__main__") == len(LAYERS) - 1
    assert layer_of("genesis_tf.a_new_module") is None  # must be placed by hand
    assert layer_of("genesis_tf.export.saved_model") < layer_of("genesis_tf.export.__main__")
    assert layer_of("genesis_tf.plotting.grids") < layer_of("genesis_tf.training.summaries")
    assert layer_of("genesis_tf.plotting.figures") > layer_of("genesis_tf.plotting.grids")
    # The graph itself: lazy imports inside functions count (demo imports figures in main).
    graph = import_graph()
    assert "genesis_tf.plotting.figures" in graph["genesis_tf.demo"]
    assert "genesis_tf.plotting.grids" in graph["genesis_tf.training.summaries"]
    assert graph["genesis_tf.errors"] == set()
