"""The package's imports: no cycles, and data flows one way through the stages
(pixels -> tokens -> tokens -> pixels -> scores), read from the source, every import
counted (inside functions and under TYPE_CHECKING too: a lazy import is still a dependency)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mini_t2i"

# Each module's layer, by the longest matching prefix; a module may import only its own
# layer or lower ones. The table is the architecture, written down.
LAYERS = {
    # 0: foundations every stage uses; no stage of their own
    "atomic": 0, "config": 0, "runtime": 0, "pixels": 0, "presets": 0, "training": 0, "checkpoint": 0,
    "distributed": 0, "text.special_ids": 0, "report": 0,
    # 1: pictures and captions: Shapes World, data sources and builders, image metrics
    "shapes": 1, "data": 1, "metrics": 1,
    # 2: the tokenizers (pixels -> tokens, captions -> ids), and the data that reads through them
    "vq": 2, "text": 2, "data.pretokenize": 2, "data.pairs": 2,
    # 3: the generators (tokens -> tokens; the diffusion baseline beside them)
    "transformer": 3, "transformer_jax": 3, "diffusion": 3,
    # 4: scores
    "rerank": 4,
    # 5: the text-to-image pipeline
    "pipeline": 5,
    # 6: applications on top of everything
    "compare": 6, "bench": 6, "demo": 6, "stress": 6, "cli": 6, "__main__": 6, "": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def import_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports}; `from a import b` counts as a.b where
    that is a module, else as a."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.level == 0, f"{name}: use absolute imports (mini_t2i....)"
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    rest = module.removeprefix("mini_t2i").lstrip(".")
    matches = [p for p in LAYERS if rest == p or rest.startswith(p + ".") or p == ""]
    return LAYERS[max(matches, key=len)]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 80  # the walk found the package
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_later_stage():
    backwards = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                 for a, targets in import_graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert backwards == []
