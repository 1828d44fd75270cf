"""A safe evaluator for a sweep's `derived` values: arithmetic over numbers and keys.

Derived values (steps from a token budget, warm-up as a share of steps, ...) are written
as Python-looking arithmetic, parsed with `ast` and walked node by node against a whitelist:
numbers, names (sweep variables and dotted config keys such as `train.global_batch_size`),
`+ - * / // % **`, unary minus and plus, and calls of min, max, round, int, float, log, sqrt,
abs. Anything else (attribute access on anything but a known dotted key, other calls,
lambdas, comprehensions, subscripts, strings) is refused. Python's `eval` is never used.

Nothing in an expression can exhaust memory or time: the text is at most MAX_LENGTH
characters and MAX_DEPTH nodes deep (checked before and after parsing), every integer,
given or computed, has at most MAX_INT_BITS bits (a power is checked before it is computed,
so `(9 ** 999) ** 999` is refused at once), and every float is finite. No config value
needs more: 2 ** 256 tokens is far beyond any budget.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from typing import Any

from lmjax.errors import ConfigError

FUNCTIONS = {
    "min": min, "max": max, "round": round, "int": int, "float": float,
    "log": math.log, "sqrt": math.sqrt, "abs": abs,
}
BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# Bounds that keep evaluation instant (see the module docstring).
MAX_EXPONENT = 1000
MAX_INT_BITS = 256
MAX_LENGTH = 1000
MAX_DEPTH = 50


class ExpressionError(ConfigError):
    """An expression that is not allowed, or that fails to evaluate."""


def evaluate(expression: str, names: Mapping[str, Any]) -> int | float:
    """The value of `expression` with `names` (dotted keys allowed) bound; ExpressionError
    with a one-line reason otherwise."""
    text = str(expression).strip()
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long: at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, MemoryError, RecursionError) as err:
        reason = err.msg if isinstance(err, SyntaxError) else "nested too deeply"
        raise ExpressionError(f"{_shown(text)} is not an arithmetic expression ({reason})") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise ExpressionError(f"{_shown(text)} is nested more than {MAX_DEPTH} levels deep: split it "
                              "into several derived values")
    try:
        value = _Evaluator(names).visit(tree.body)
    except (ArithmeticError, ValueError, TypeError) as err:
        if isinstance(err, ExpressionError):
            raise
        raise ExpressionError(f"{_shown(text)} cannot be evaluated: {err}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{_shown(text)} gives {value!r}, not a number")
    return value


def _shown(text: str, limit: int = 60) -> str:
    """The expression quoted for an error, shortened so that the message stays one short line."""
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


def _depth(root: ast.AST) -> int:
    """The deepest nesting of the tree, found without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _bounded(value):
    """`value` if it is a number of bounded size: an int of at most MAX_INT_BITS bits, a
    finite float; ExpressionError otherwise. Every value the evaluator handles passes here."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"an intermediate value has {value.bit_length()} bits: at most "
                              f"{MAX_INT_BITS} (about 1e77)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"an intermediate value is {value}: keep values finite")
    return value


def _check_power(base, exponent) -> None:
    """Refuses a power whose result would be too large before computing it."""
    if abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"the exponent {exponent} is too large (at most {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise ExpressionError(f"{base} ** {exponent} has more than {MAX_INT_BITS} bits")


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attribute accesses on a bare name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _Evaluator(ast.NodeVisitor):
    def __init__(self, names: Mapping[str, Any]):
        self.names = names

    def visit(self, node: ast.AST):
        return _bounded(super().visit(node))

    def generic_visit(self, node: ast.AST):
        raise ExpressionError(f"{type(node).__name__} is not allowed in a derived expression "
                              "(only numbers, keys, + - * / // % ** and "
                              f"{', '.join(FUNCTIONS)})")

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"the constant {node.value!r} is not a number")
        return node.value

    def visit_Name(self, node: ast.Name):
        return self._lookup(node.id)

    def visit_Attribute(self, node: ast.Attribute):
        dotted = _dotted(node)
        if dotted is None or any(part.startswith("_") for part in dotted.split(".")):
            raise ExpressionError("attribute access is not allowed in a derived expression "
                                  "(only dotted config keys such as train.steps)")
        return self._lookup(dotted)

    def _lookup(self, name: str):
        if name not in self.names:
            raise ExpressionError(f"unknown name {name!r}: use a sweep variable or a dotted "
                                  "config key such as train.global_batch_size")
        value = self.names[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"{name}={value!r} is not a number")
        return value

    def visit_BinOp(self, node: ast.BinOp):
        operation = BINARY.get(type(node.op))
        if operation is None:
            raise ExpressionError(f"the operator {type(node.op).__name__} is not allowed")
        left, right = self.visit(node.left), self.visit(node.right)
        if operation is operator.pow:
            _check_power(left, right)
        return operation(left, right)

    def visit_UnaryOp(self, node: ast.UnaryOp):
        operation = UNARY.get(type(node.op))
        if operation is None:
            raise ExpressionError(f"the operator {type(node.op).__name__} is not allowed")
        return operation(self.visit(node.operand))

    def visit_Call(self, node: ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            shown = _dotted(node.func) or type(node.func).__name__
            raise ExpressionError(f"calling {shown} is not allowed: only {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ExpressionError(f"{name}() takes plain positional arguments only")
        return FUNCTIONS[name](*(self.visit(arg) for arg in node.args))


def referenced_names(expression: str) -> set[str]:
    """The names and dotted keys `expression` reads (empty if it does not parse: `evaluate`
    reports that)."""
    try:
        tree = ast.parse(str(expression).strip(), mode="eval")
    except (SyntaxError, MemoryError, RecursionError, ValueError):
        return set()
    found, stack = set(), [tree.body]
    while stack:
        node = stack.pop()
        dotted = _dotted(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
        if dotted:
            found.add(dotted)
            continue
        if isinstance(node, ast.Call):
            stack.extend(node.args)  # the called function's name is not a value
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found
