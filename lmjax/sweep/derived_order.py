"""The order in which a sweep's `derived` values are computed: each after the derived values
it reads, whatever their order in the file.

A value that reads itself, or values that read each other in a circle, have no order: read
in file order, the first would get the base config's value of a key the sweep later changes
(or fail with 'unknown name'), so a cycle is refused, naming its members.
"""

from __future__ import annotations

from lmjax.errors import ConfigError
from lmjax.sweep.expressions import referenced_names


def evaluation_order(derived: dict[str, str], where: str) -> list[str]:
    """The derived keys, each after those it reads (file order otherwise); ConfigError naming
    the cycle when there is one."""
    reads = {key: referenced_names(expression) & set(derived) for key, expression in derived.items()}
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            cycle = path[path.index(key):] + [key]
            raise ConfigError(f"{where}: derived values read each other in a cycle "
                              f"({' -> '.join(cycle)}): compute one of them from other values")
        state[key] = "visiting"
        for name in sorted(reads[key], key=list(derived).index):
            visit(name, [*path, key])
        state[key] = "done"
        order.append(key)

    for key in derived:
        visit(key, [])
    return order
