"""A hand formula's meaning: one evaluator of trees and its backends.

:func:`evaluate` walks a tree and checks every shape (with the user's text), once for every
backend; a backend says what the operations are. :class:`SympyBackend` builds the SymPy matrix
expression, :class:`NumpyBackend` numbers at one point (fast: proposals are screened with it),
:class:`ExplicitBackend` explicit SymPy matrices at the checker's dims (for the symbolic comparison).
The last two give the network's names their values through the checker's view of the network.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from sympy import (
    Basic,
    Dummy,
    Identity,
    ImmutableMatrix,
    Integer,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    S,
    ZeroMatrix,
    count_ops,
    expand,
    lambdify,
    nsimplify,
)
from sympy import exp as sp_exp
from sympy import log as sp_log
from sympy.matrices import MatrixBase

from ..core.algebra import hadamard, hadamard_power, mat_add, mat_mul, transpose
from ..core.explicit import explicit
from ..core.softmax import log_softmax, softmax
from ..core.symbols import Intermediate, LossGradient
from .formula import HandShapeError, Node, node, to_text

SYMBOLIC_LIMIT = 1500     # operations in one explicit entry of a named quantity beyond which SymPy is not asked



# --- meaning: one evaluator, two backends -----------------------------------------------------------

class SympyBackend:
    """Builds the SymPy matrix expression, checking every shape on the way (with the user's text)."""

    def __init__(self, softmax_axis: int = 1):
        self.softmax_axis = softmax_axis

    def is_matrix(self, value) -> bool:
        return isinstance(value, MatrixExpr)

    def shape(self, value):
        return value.shape if isinstance(value, MatrixExpr) else None

    def same(self, a, b) -> bool:
        return a == b or expand(a - b) == 0

    def leaf(self, value):
        return value

    def number(self, value):
        return value

    def ones(self, rows, cols):
        return OneMatrix(rows, cols)

    def matmul(self, a, b):
        return mat_mul(a, b)

    def hadamard(self, a, b):
        if not self.is_matrix(a) or not self.is_matrix(b):
            return mat_mul(a, b)
        return hadamard(a, b)

    def add(self, a, b):
        if self.is_matrix(a) != self.is_matrix(b):
            scalar, matrix = (a, b) if self.is_matrix(b) else (b, a)
            filled = mat_mul(scalar, OneMatrix(*matrix.shape))
            return mat_add(filled, matrix) if self.is_matrix(b) else mat_add(matrix, filled)
        return mat_add(a, b)

    def scale(self, c, a):
        return mat_mul(c, a)

    def divide(self, a, b):
        if not self.is_matrix(b):
            return mat_mul(S.One / b, a) if self.is_matrix(a) else a / b
        return self.hadamard(a, hadamard_power(b, -1)) if self.is_matrix(a) else mat_mul(a, hadamard_power(b, -1))

    def transpose(self, a):
        return transpose(a)

    def power(self, a, k):
        return hadamard_power(a, k) if self.is_matrix(a) else a ** k

    def apply(self, cls, prime: bool, args):
        if cls in (softmax, log_softmax):
            return cls(args[0], self.softmax_axis)
        value = cls(*args)  # fills in default parameters (leaky_relu's slope)
        return value.prime()(value.arg, *value.params) if prime else value


def to_sympy(tree: Node, softmax_axis: int = 1) -> Basic:
    """The SymPy expression of a hand formula; a HandShapeError names operands that do not fit."""
    return evaluate(tree, SympyBackend(softmax_axis))


def _describe(tree: Node, value, backend) -> str:
    shape = backend.shape(value)
    shown = f"{shape[0]} x {shape[1]}" if shape is not None else "a scalar"
    return f"{to_text(tree)} ({shown})"


def evaluate(tree: Node, backend) -> Any:
    """The value of ``tree`` under ``backend``; shapes are checked here, once for both backends."""
    kind = tree.kind
    if kind == "leaf":
        return backend.leaf(tree.value)
    if kind == "num":
        return backend.number(tree.value)
    if kind == "ones":
        raise HandShapeError(f"cannot tell the length of the ones vector {to_text(tree)}: write it next to a "
                             "matrix, as in 1^T G or G 1", tree)
    if kind == "neg":
        return backend.scale(Integer(-1), evaluate(tree.args[0], backend))
    if kind == "sum":
        return _sum(tree, backend)
    if kind == "prod":
        return _product(tree, backend)
    if kind == "had":
        return _hadamard(tree, backend)
    if kind == "div":
        return _divide(tree, backend)
    if kind == "T":
        value = evaluate(tree.args[0], backend)
        return backend.transpose(value) if backend.is_matrix(value) else value  # a scalar is its own transpose
    if kind == "pow":
        return backend.power(evaluate(tree.args[0], backend), tree.value)
    if kind == "call":
        return _call_value(tree, backend)
    raise ValueError(kind)  # pragma: no cover


def _sum(tree: Node, backend):
    total, first = None, None
    for term, sign in zip(tree.args, tree.value):
        value = evaluate(term, backend)
        if sign < 0:
            value = backend.scale(Integer(-1), value)
        if total is not None and backend.is_matrix(total) and backend.is_matrix(value):
            a, b = backend.shape(total), backend.shape(value)
            if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
                raise HandShapeError(f"sum of {_describe(first, total, backend)} and "
                                     f"{_describe(term, value, backend)}: the shapes differ", tree)
        total = value if total is None else backend.add(total, value)
        first = term if first is None else tree
    return total


def _is_ones(tree: Node) -> bool:
    return tree.kind == "ones" or (tree.kind == "T" and tree.args[0].kind == "ones")


def _product(tree: Node, backend):
    factors = list(tree.args)
    values: list[Any] = [None if _is_ones(f) else evaluate(f, backend) for f in factors]
    for k, f in enumerate(factors):
        left = values[k - 1] if k else None
        # a literal 1 right after a matrix is a ones column: dL/du 1 sums each row
        if f.kind == "num" and f.value == 1 and k and backend.is_matrix(left):
            values[k] = backend.ones(backend.shape(left)[1], 1)
        elif _is_ones(f):
            values[k] = _ones_value(f, factors, values, k, backend)
    result, shown = values[0], factors[0]
    for f, value in zip(factors[1:], values[1:]):
        if backend.is_matrix(result) and backend.is_matrix(value):
            inner_left, inner_right = backend.shape(result)[1], backend.shape(value)[0]
            if not backend.same(inner_left, inner_right):
                raise HandShapeError(
                    f"matrix product of {_describe(shown, result, backend)} and {_describe(f, value, backend)}: "
                    f"the inner dimensions {inner_left} and {inner_right} differ", tree)
            result = backend.matmul(result, value)
        elif backend.is_matrix(result):
            result = backend.scale(value, result)
        else:
            result = backend.scale(result, value) if backend.is_matrix(value) else result * value
        shown = node("prod", shown, f)
    return result


def _ones_value(f: Node, factors, values, k, backend):
    """The ones vector at factor ``k``: a row (1^T G) as long as the next matrix has rows, a column
    (G 1) as long as the previous matrix has columns. Scalars in between do not count."""
    row = (f.kind == "T") != bool(f.args[0].value if f.kind == "T" else f.value)
    others = range(k + 1, len(values)) if row else range(k - 1, -1, -1)
    neighbour = next((values[m] for m in others if backend.is_matrix(values[m])), None)
    if neighbour is None:
        where = "after" if row else "before"
        raise HandShapeError(f"cannot tell the length of {to_text(f)}: put a matrix right {where} it", f)
    return backend.ones(1, backend.shape(neighbour)[0]) if row else backend.ones(backend.shape(neighbour)[1], 1)


def _hadamard(tree: Node, backend):
    result, shown = None, None
    for f in tree.args:
        value = evaluate(f, backend)
        if result is None:
            result, shown = value, f
            continue
        if backend.is_matrix(result) and backend.is_matrix(value):
            a, b = backend.shape(result), backend.shape(value)
            if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
                raise HandShapeError(f"Hadamard product of {_describe(shown, result, backend)} and "
                                     f"{_describe(f, value, backend)}: the shapes differ", tree)
        result = backend.hadamard(result, value)
        shown = node("had", shown, f)
    return result


def _divide(tree: Node, backend):
    top, bottom = (evaluate(a, backend) for a in tree.args)
    if backend.is_matrix(top) and backend.is_matrix(bottom):
        a, b = backend.shape(top), backend.shape(bottom)
        if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
            raise HandShapeError(f"entrywise division of {_describe(tree.args[0], top, backend)} by "
                                 f"{_describe(tree.args[1], bottom, backend)}: the shapes differ", tree)
    return backend.divide(top, bottom)


def _call_value(tree: Node, backend):
    function, prime = tree.value
    args = [evaluate(a, backend) for a in tree.args]
    if not backend.is_matrix(args[0]):
        if function.reduce or function.cls in (softmax, log_softmax):
            raise HandShapeError(f"{to_text(tree)}: the argument of {function.name} must be a matrix", tree)
        # a function of a scalar (exp(0), log(N)) is a scalar: its value on the 1 x 1 matrix of it
        one_by_one = backend.scale(args[0], backend.ones(1, 1))
        return backend.apply(function.cls, prime, [one_by_one, *args[1:]])[0, 0]
    if function.reduce == "rows":
        return backend.matmul(backend.ones(1, backend.shape(args[0])[0]), args[0])
    if function.reduce == "cols":
        return backend.matmul(args[0], backend.ones(backend.shape(args[0])[1], 1))
    return backend.apply(function.cls, prime, args)


# --- backends that give a tree its value --------------------------------------------------------------

class _Values:
    """What the NumPy and the explicit backend share: how names of the network get their values."""

    def __init__(self, net):
        self.net = net
        self.memo: dict[Basic, Any] = {}

    def leaf(self, value: Basic):
        if value in self.memo:
            return self.memo[value]
        if isinstance(value, (Intermediate, LossGradient)) and value in self.net.expansion:
            result = evaluate(self.net.tree(self.net.expansion[value]), self)
        elif type(value) is MatrixSymbol:
            result = self.symbol(value)
        elif isinstance(value, (OneMatrix, Identity, ZeroMatrix)):
            result = self.constant(value.subs(self.net.dims).as_explicit())
        elif not isinstance(value, MatrixExpr) and not value.atoms(MatrixSymbol):
            result = self.scalar(value.subs(self.net.dims))
        else:  # a matrix expression or a scalar of matrices (det(X) in det(X) X^-T): written out
            result = self.other(value)
        self.memo[value] = result
        return result

    def number(self, value):
        return value

    def same(self, a, b) -> bool:
        return a == b


class NumpyBackend(_Values):
    """A tree's value at one point, in floats (fast: proposals are screened with it)."""

    def __init__(self, net, point: dict):
        super().__init__(net)
        self.point = point

    def symbol(self, value):
        return self.point[value.name]

    def constant(self, matrix):
        return np.array(matrix.tolist(), dtype=float)

    def scalar(self, value):
        return float(value)

    def other(self, value):
        # the network's matrices as numbers before writing out: an inverse or determinant of numbers is
        # quick where the same of symbolic entries is not
        numbers = {s.subs(self.net.dims): ImmutableMatrix(self.point[s.name]) for s in self.net.leaves}
        written = explicit(self.net.expand_closed(value).subs(self.net.dims).xreplace(numbers))
        if not isinstance(written, MatrixBase):
            return float(written)
        return np.array(ImmutableMatrix(written).tolist(), dtype=float)

    def number(self, value):
        return float(value)

    def is_matrix(self, value) -> bool:
        return isinstance(value, np.ndarray)

    def shape(self, value):
        return value.shape if isinstance(value, np.ndarray) else None

    def ones(self, rows, cols):
        return np.ones((int(rows), int(cols)))

    def matmul(self, a, b):
        return a @ b

    def hadamard(self, a, b):
        return a * b

    def add(self, a, b):
        return a + b

    def scale(self, c, a):
        return float(c) * a

    def divide(self, a, b):
        with np.errstate(all="ignore"):
            return a / b

    def transpose(self, a):
        return a.T

    def power(self, a, k):
        with np.errstate(all="ignore"):
            return np.power(a, float(k))

    def apply(self, cls, prime: bool, args):
        axis = self.net.scope.softmax_axis
        if cls in (softmax, log_softmax):
            z = args[0] - args[0].max(axis=axis, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
            return np.exp(log_p) if cls is softmax else log_p
        params = tuple(_exact(p) for p in args[1:])
        with np.errstate(all="ignore"):
            return np.asarray(_scalar_function(cls, prime, params)(args[0]), dtype=float) * np.ones_like(args[0])


class SymbolicTooLarge(Exception):
    """The explicit entries grow past :data:`SYMBOLIC_LIMIT`: equality is left to the numbers."""


class ExplicitBackend(_Values):
    """A tree's value as an explicit SymPy matrix at the dims (for the symbolic comparison)."""

    def __init__(self, net, opaque: tuple = ()):
        super().__init__(net)
        self.opaque = opaque
        self.opened: dict[Basic, Basic] = {}     # a kept name at the dims -> the name

    def leaf(self, value: Basic):
        if isinstance(value, self.opaque) and value in self.net.expansion:
            concrete = value.subs(self.net.dims)
            self.opened[concrete] = value
            return concrete.as_explicit()
        known = value in self.memo        # measured once, when first written out
        result = super().leaf(value)
        named = isinstance(value, (Intermediate, LossGradient)) and isinstance(result, MatrixBase)
        if named and not known and max((count_ops(e) for e in result), default=0) > SYMBOLIC_LIMIT:
            self.memo.pop(value)
            raise SymbolicTooLarge(value)
        return result

    def symbol(self, value):
        return value.subs(self.net.dims).as_explicit()

    def constant(self, matrix):
        return ImmutableMatrix(matrix)

    def scalar(self, value):
        return value

    def other(self, value):
        written = explicit(self.net.expand_closed(value).subs(self.net.dims))
        return ImmutableMatrix(written) if isinstance(written, MatrixBase) else written

    def is_matrix(self, value) -> bool:
        return isinstance(value, MatrixBase)

    def shape(self, value):
        return value.shape if isinstance(value, MatrixBase) else None

    def ones(self, rows, cols):
        return ImmutableMatrix.ones(int(rows), int(cols))

    def matmul(self, a, b):
        return ImmutableMatrix(a * b)

    def hadamard(self, a, b):
        if not (self.is_matrix(a) and self.is_matrix(b)):
            return a * b
        return ImmutableMatrix(a.multiply_elementwise(b))

    def add(self, a, b):
        if self.is_matrix(a) != self.is_matrix(b):
            scalar, matrix = (a, b) if self.is_matrix(b) else (b, a)
            return ImmutableMatrix(matrix.applyfunc(lambda e: e + scalar))
        return a + b

    def scale(self, c, a):
        return c * a

    def divide(self, a, b):
        if not self.is_matrix(b):
            return a / b
        inverse = b.applyfunc(lambda e: 1 / e)
        return self.hadamard(a, inverse) if self.is_matrix(a) else a * inverse

    def transpose(self, a):
        return a.T

    def power(self, a, k):
        return a.applyfunc(lambda e: e ** k) if self.is_matrix(a) else a ** k

    def apply(self, cls, prime: bool, args):
        if cls in (softmax, log_softmax):
            return _explicit_softmax(args[0], self.net.scope.softmax_axis, log=cls is log_softmax)
        value = cls(*args)
        if prime:
            value = value.prime()(value.arg, *value.params)
        return ImmutableMatrix(value.as_explicit())


def _explicit_softmax(z: ImmutableMatrix, axis: int, log: bool) -> ImmutableMatrix:
    """Softmax over ``axis`` entry by entry (SymPy's summation is far slower for a handful of terms)."""
    rows, cols = z.shape

    def normalizer(i, j):
        terms = [z[i, k] for k in range(cols)] if axis == 1 else [z[k, j] for k in range(rows)]
        return sp_log(sum(sp_exp(t) for t in terms))
    if log:
        return ImmutableMatrix(rows, cols, lambda i, j: z[i, j] - normalizer(i, j))
    return ImmutableMatrix(rows, cols, lambda i, j: sp_exp(z[i, j] - normalizer(i, j)))


_SCALAR_FUNCTIONS: dict = {}


@lru_cache(maxsize=256)
def _exact(value: float) -> Basic:
    """An activation's parameter (leaky_relu's 0.1) back as the exact number it was written as."""
    return nsimplify(value)


def _scalar_function(cls, prime: bool, params: tuple) -> Callable:
    key = (cls, prime, params)
    if key not in _SCALAR_FUNCTIONS:
        cell = MatrixSymbol("_a", 1, 1)
        value = cls(cell, *params)
        if prime:
            value = value.prime()(value.arg, *value.params)
        x = Dummy("x")
        _SCALAR_FUNCTIONS[key] = lambdify(x, value._entry(0, 0).xreplace({cell[0, 0]: x}), "numpy")
    return _SCALAR_FUNCTIONS[key]
