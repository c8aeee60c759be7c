"""Arithmetic for the GTA Calculator without eval: a small interpreter over Python's expression AST.

Only numbers, arithmetic operators, and the functions and constants of `math` (also spelled `math.name`)
are allowed, with limits that keep a single expression from running away with memory or time.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from agent.tools.base import ToolError

_FUNCTIONS = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")
              and callable(getattr(math, name))}
_FUNCTIONS.update(abs=abs, round=round, min=min, max=max, sum=sum, pow=pow, int=int, float=float)
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_BITS = 100_000
_MAX_FACTORIAL = 5_000


def evaluate(expression: str) -> Any:
    """The value of one arithmetic expression, e.g. `sqrt(2) * 3 ** 2` or `math.log(100, 10)`."""
    try:
        tree = ast.parse(str(expression).strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid expression: {exc.msg}") from None
    try:
        return _eval(tree.body)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}") from None


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_eval(item) for item in node.elts]
    if isinstance(node, (ast.Name, ast.Attribute)):
        return _CONSTANTS[_name(node, _CONSTANTS)]
    if isinstance(node, ast.Call) and not node.keywords:
        name = _name(node.func, _FUNCTIONS)
        args = [_eval(arg) for arg in node.args]
        if name == "factorial" and args and isinstance(args[0], int) and args[0] > _MAX_FACTORIAL:
            raise ToolError(f"factorial of more than {_MAX_FACTORIAL} is too large to compute")
        return _FUNCTIONS[name](*args)
    raise ToolError(f"not allowed in a calculator expression: {ast.unparse(node)!r} (numbers, operators and math "
                    "functions only)")


def _name(node: ast.AST, allowed: dict[str, Any]) -> str:
    """`sqrt` or `math.sqrt` -> "sqrt", if it is in `allowed`; nothing else resolves."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math":
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    else:
        name = ast.unparse(node)
    if name not in allowed:
        raise ToolError(f"unknown name in a calculator expression: {name!r}")
    return name


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if base.bit_length() * exponent > _MAX_BITS:
            raise ToolError("the result of this power is too large to compute")
