"""The opt-in workspace of a generated step (``to_numpy(g, name, workspace=True)``): its statements
written to reuse the previous call's arrays.

A statement that makes a fresh array at its top level, a matrix product ``A @ B``, an arithmetic
operator on arrays (``a * b``), a NumPy ufunc or a runtime helper that takes ``out`` (``gelu``), is written ``Z = ws['Z'] = np.matmul(A, B,
out=ws.get('Z'))``: on the first call ``ws.get`` gives None and the array is made (and kept in ``ws``),
on the next ones it is written into. The array a buffer holds was made by the same operation on
inputs of the same shapes and dtypes (the module's ``Workspace`` starts afresh when they change), so
its shape and dtype are always the right ones. Only a target assigned once in its function is
rewritten, so no statement writes a buffer another statement of the same call still reads. The rest
(in-place updates, sums, small helpers) is left as printed.
"""

from __future__ import annotations

import ast
import inspect
from collections import Counter

import numpy as np

from . import runtime

__all__ = ["WORKSPACE", "with_workspace"]

# The generated functions' local dict of reusable arrays (a reserved identifier).
WORKSPACE = "ws"
# A binary operator at a statement's top level and the NumPy ufunc it calls on arrays.
UFUNCS = {ast.MatMult: "matmul", ast.Mult: "multiply", ast.Add: "add", ast.Sub: "subtract", ast.Div: "true_divide"}


def with_workspace(statements: list, replace) -> list:
    """``statements`` (one function's), each fresh-array statement rewritten to reuse its buffer;
    ``replace(statement, code)`` makes the rewritten statement."""
    assigned = Counter(s.target for s in statements if s.target and s.op == "=")
    rewritten = []
    for s in statements:
        code = _into_buffer(s.code, s.target) if s.op == "=" and assigned[s.target] == 1 else None
        rewritten.append(s if code is None else replace(s, code))
    return rewritten


def _into_buffer(code: str, target: str) -> str | None:
    """``ws['Z'] = <code with out=ws.get('Z')>``, or None when the code's top level takes no ``out``."""
    tree = ast.parse(code, mode="eval").body
    out = ast.keyword("out", ast.parse(f"{WORKSPACE}.get({target!r})", mode="eval").body)
    if isinstance(tree, ast.BinOp) and type(tree.op) in UFUNCS and _is_array(tree.left) | _is_array(tree.right):
        call = ast.Call(ast.parse(f"np.{UFUNCS[type(tree.op)]}", mode="eval").body, [tree.left, tree.right], [out])
    elif isinstance(tree, ast.Call) and _takes_out(tree):
        call = ast.Call(tree.func, tree.args, [*tree.keywords, out])
    else:
        return None
    return f"{WORKSPACE}[{target!r}] = {ast.unparse(call)}"


def _is_array(node: ast.expr) -> bool:
    """An operand that may be an array (it reads a name), not a number: one of them makes the operator
    NumPy's ufunc."""
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _takes_out(call: ast.Call) -> bool:
    """A NumPy ufunc given only its inputs, or a runtime helper with an ``out`` parameter, not given it."""
    if any(k.arg == "out" or k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        return False
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
        ufunc = getattr(np, func.attr, None)
        return isinstance(ufunc, np.ufunc) and len(call.args) == ufunc.nin
    if isinstance(func, ast.Name) and func.id in runtime.HELPERS and inspect.isfunction(runtime.HELPERS[func.id][0]):
        parameters = list(inspect.signature(runtime.HELPERS[func.id][0]).parameters.values())
        names = [p.name for p in parameters]
        # out as an optional parameter (default None) that the call leaves to its default
        return "out" in names and names.index("out") >= len(call.args) and parameters[names.index("out")].default is None
    return False
