"""Imports in the tools packages (sweep, ngram, scaling, objectives, tokenizers) point one way.

The graph is read from the source with `ast`, lazy imports inside functions included (they
are cycles too, only hidden), and checked for strongly connected components by an
independent depth-first search; a cycle is named with its modules.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "lmjax"
PACKAGES = ("sweep", "ngram", "scaling", "objectives", "tokenizers")


def _module_name(path: pathlib.Path) -> str:
    parts = ("lmjax", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        # A package's __init__ re-exporting its modules is not a cycle with them.
        graph[name] = {t for t in targets if t in files and t != name and not name.startswith(f"{t}.")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that reaches itself, with the path back to it."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append(path + [start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_tools_packages_have_no_import_cycles():
    graph = _graph()
    assert "lmjax.sweep.spec" in graph and "lmjax.ngram.storage" in graph
    cycles = _cycles(graph)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)
