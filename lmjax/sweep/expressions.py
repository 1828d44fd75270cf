"""A safe evaluator for a sweep's `derived` values: arithmetic over numbers and keys.

Derived values (steps from a token budget, warm-up as a share of steps, ...) are written
as Python-looking arithmetic, parsed with `ast` and walked node by node against a whitelist:
numbers, names (sweep variables and dotted config keys such as `train.global_batch_size`),
`+ - * / // % **`, unary minus and plus, and calls of min, max, round, int, float, log, sqrt,
abs. Anything else (attribute access on anything but a known dotted key, other calls,
lambdas, comprehensions, subscripts, strings) is refused. Python's `eval` is never used.
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
# Bounds a power so that `10 ** 10 ** 10` cannot exhaust memory or time.
MAX_EXPONENT = 1000


class ExpressionError(ConfigError):
    """An expression that is not allowed, or that fails to evaluate."""


def evaluate(expression: str, names: Mapping[str, Any]) -> int | float:
    """The value of `expression` with `names` (dotted keys allowed) bound; ExpressionError
    with a one-line reason otherwise."""
    try:
        tree = ast.parse(str(expression).strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"{expression!r} is not an arithmetic expression ({err.msg})") from None
    try:
        value = _Evaluator(names).visit(tree.body)
    except (ArithmeticError, ValueError, TypeError) as err:
        if isinstance(err, ExpressionError):
            raise
        raise ExpressionError(f"{expression!r} cannot be evaluated: {err}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{expression!r} gives {value!r}, not a number")
    return value


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
        if operation is operator.pow and abs(right) > MAX_EXPONENT:
            raise ExpressionError(f"the exponent {right} is too large (at most {MAX_EXPONENT})")
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
