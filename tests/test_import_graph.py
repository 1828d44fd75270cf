"""The package's imports point one way: no module imports one that imports it back (directly
or around a loop, at module level or inside a function), and nothing below the evaluation
floor imports `lmjax.eval`.

The graph is read from the source with `ast`, independently of how Python resolves the
imports at run time, so a lazy (function-level) import that closes a loop counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lmjax"

# The floors above evaluation, which may call it.
MAY_IMPORT_EVAL = ("lmjax.eval", "lmjax.commands", "lmjax.cli", "lmjax.sweep")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the lmjax modules it imports anywhere in its body (`from P import m`: the
    submodule m when there is one, else P)."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in known.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {owner(alias.name) for alias in node.names if alias.name.startswith("lmjax")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lmjax"):
                targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                            else owner(node.module) for alias in node.names}
        graph[name] = targets - {name, None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan), iteratively."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
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
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def eval_importers(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return {name: {t for t in targets if under(t, "lmjax.eval")} for name, targets in graph.items()
            if not any(under(name, floor) for floor in MAY_IMPORT_EVAL)
            and any(under(t, "lmjax.eval") for t in targets)}


def test_the_cycle_finder_finds_a_loop_and_nothing_in_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "lmjax.data.mixture" in graph["lmjax.data.pipeline"]  # module level
    assert "lmjax.data.fertility" in graph["lmjax.commands.data"]  # inside a function


def test_no_import_cycle():
    found = [sorted(c) for c in cycles(import_graph())]
    assert found == [], f"import cycles: {found}; move the shared piece so imports point one way"


def test_only_the_floors_above_eval_import_it():
    found = {name: sorted(t) for name, t in eval_importers(import_graph()).items()}
    assert found == {}, f"these import lmjax.eval from below it: {found}"
