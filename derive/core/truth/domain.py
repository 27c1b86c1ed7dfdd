"""The domain of a loss: how to draw valid random values for each of its matrices.

:func:`domain` reads what each consumer needs of its arguments (an invertible matrix under a
determinant, positive entries under a log or a root, probabilities for binary cross-entropy,
targets on the simplex for a cross-entropy declared so) and :func:`sample` draws them;
:func:`canonical_dims` gives the small distinct sizes the numeric check runs at.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import count

import numpy as np
from sympy import (
    Add,
    Basic,
    BlockMatrix,
    Determinant,
    Dummy,
    HadamardPower,
    HadamardProduct,
    Inverse,
    Lambda,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    Pow,
    Symbol,
    Trace,
    Transpose,
    log,
    sympify,
)
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement

from ..dims import fit_dims, requirements
from ..elementwise import Elementwise, record_of
from ..losses import BinaryCrossEntropy, SoftmaxCrossEntropy
from ..walk import post_order
from .evaluate import LEAF_TYPES, Program, Value

__all__ = ["Draw", "canonical_dims", "domain", "sample"]


NORMAL = "normal"
POSITIVE = "positive"
PROBABILITY = "probability"
NONNEGATIVE = "nonnegative"
SIMPLEX = "simplex"
INVERTIBLE = "invertible"
INVERTIBLE_POSITIVE = "invertible positive"
INTEGER = "integer"
NONZERO = "nonzero"


@dataclass(frozen=True)
class Draw:
    """How to draw valid random values for one matrix (or scalar symbol) of a loss.

    ``kind`` is one of: ``normal`` (standard normal entries), ``positive`` (in (0.5, 1.5): the
    argument of a log or a root), ``probability`` (in (0.05, 0.95)), ``nonnegative`` (in [0, 1)),
    ``simplex`` (each example's entries positive and summing to 1 along ``axis``: 1 sums each row),
    ``invertible`` (I + E with |E_ij| < 1/(2n): determinant positive, condition number under 3),
    ``invertible positive`` (the same with 0 < E_ij), ``nonzero`` (|x| in (0.5, 1.5), either sign: a
    divisor, so that 1/t is never huge and saturates what follows) and ``integer`` (a scalar in 2..4).
    """

    kind: str
    axis: int | None = None
    reason: str = ""

    def sample(self, rng: np.random.Generator, shape: tuple) -> Value:
        if self.kind == INTEGER:
            return float(rng.integers(2, 5))
        if self.kind in (INVERTIBLE, INVERTIBLE_POSITIVE):
            n = shape[0]
            low = -0.5 if self.kind == INVERTIBLE else 0.05
            # ||E||_2 <= ||E||_F < 1/2: every eigenvalue within 1/2 of 1 (det > 0), singular values
            # in (1/2, 3/2). Not symmetric, so that A^-1 and A^-T differ and a wrong transpose shows.
            return np.eye(n) + rng.uniform(low, 0.5, size=shape) / n
        if self.kind == SIMPLEX:
            weights = rng.uniform(0.1, 1.0, size=shape)
            return weights / weights.sum(axis=self.axis, keepdims=True)
        low, high = {POSITIVE: (0.5, 1.5), PROBABILITY: (0.05, 0.95), NONNEGATIVE: (0.0, 1.0)}.get(self.kind, (0, 0))
        if self.kind == NORMAL:
            values = rng.standard_normal(shape)
        elif self.kind == NONZERO:
            values = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape)
        else:
            values = rng.uniform(low, high, size=shape)
        return float(values) if shape == () else values


# What a consumer asks of its arguments (tags), and which operations pass a request on to theirs.
_POSITIVE, _INVERTIBLE, _PROBABILITY, _NONNEGATIVE = "positive", "invertible", "probability", "nonnegative"
_NONZERO = "nonzero"
_SQUARE_OPS = (Determinant, Inverse, MatPow)


def domain(loss: Basic) -> dict[Basic, Draw]:
    """For each MatrixSymbol of ``loss`` (and each scalar symbol that is not a dimension), how to draw
    valid random values: in the loss's order of first use."""
    order = _dag(loss)
    needs: dict[Basic, set] = defaultdict(set)
    for node in reversed(order):   # every consumer before its arguments
        for arg, tags in _requests(node, needs[node]):
            needs[arg] |= tags
    dims = {s for node in order if isinstance(node, MatrixExpr) and isinstance(node, LEAF_TYPES)
            for d in node.shape for s in sympify(d).free_symbols}
    bound = {v for node in order if isinstance(node, (ExprWithLimits, Lambda)) for v in node.variables}
    draws = {}
    for node in order:
        if isinstance(node, MatrixSymbol):
            draws[node] = _draw(node, needs[node])
        elif isinstance(node, Symbol) and not isinstance(node, Dummy) and node not in dims and node not in bound:
            draws[node] = _scalar_draw(node, needs[node])
    return draws


def _dag(root: Basic) -> list[Basic]:
    """Every node of ``root`` once, after its arguments (explicit matrices and blocks included)."""
    return post_order(root, _children)


def _children(node: Basic) -> tuple:
    if isinstance(node, MatrixSymbol) or not isinstance(node, Basic):
        return ()
    children = tuple(node) if isinstance(node, MatrixBase) else (
        tuple(node.blocks) if isinstance(node, BlockMatrix) else node.args)
    return tuple(c for c in children if isinstance(c, Basic))


def _requests(node: Basic, tags: set):
    """(argument, tags) pairs: what ``node`` needs of its arguments, and what it passes on of ``tags``."""
    args = node.args
    if isinstance(node, _SQUARE_OPS):
        yield args[0], {_INVERTIBLE}
        return
    if isinstance(node, log) or _positive_activation(node):
        yield args[0], {_POSITIVE}
        return
    if isinstance(node, BinaryCrossEntropy):
        yield node.prediction, {_PROBABILITY}
        yield node.target, {_PROBABILITY}
        return
    if isinstance(node, SoftmaxCrossEntropy):
        # Before the targets_sum_to_one keyword existed, the rule assumed it: read it defensively.
        on_simplex = bool(getattr(node, "targets_sum_to_one", True))
        yield node.target, {(SIMPLEX, node.axis)} if on_simplex else {_NONNEGATIVE}
        return
    if isinstance(node, (Pow, HadamardPower)):
        # a root (any power but an integer) needs a positive base; an integer power keeps it positive
        if not args[1].is_integer or _POSITIVE in tags:
            yield args[0], {_POSITIVE}
        # a learnable exponent of a probability (sigmoid(Z)^t under a BCE) keeps it one only when positive
        if _PROBABILITY in tags and not args[1].is_number:
            yield args[1], {_POSITIVE}
        # a divisor (1/t, A^{∘-1}) drawn near 0 makes what follows huge: a sigmoid of it saturates to
        # exactly 1 and a BCE of that is infinite, so no check can compare there
        if args[1].is_number and args[1].is_negative:
            yield args[0], {_NONZERO}
        return
    if not tags:
        return
    if isinstance(node, Transpose):
        yield args[0], {(SIMPLEX, 1 - t[1]) if isinstance(t, tuple) else t for t in tags}
    elif isinstance(node, (MatAdd, MatMul)):
        matrices = [a for a in args if isinstance(a, MatrixExpr)]
        square = all(_is_square(a) for a in matrices)
        for arg in matrices:
            passed = ({_POSITIVE} & tags) | ({_INVERTIBLE} & tags if square else set())
            if passed:
                yield arg, passed
    elif isinstance(node, (Add, Mul, HadamardProduct, Trace, MatrixElement)) and _POSITIVE in tags:
        for arg in args if not isinstance(node, MatrixElement) else args[:1]:
            yield arg, {_POSITIVE}
    elif isinstance(node, (Mul, HadamardProduct, MatrixElement)) and _NONZERO in tags:
        # a product is away from 0 when each factor is (a sum may cancel: left to chance)
        for arg in args if not isinstance(node, MatrixElement) else args[:1]:
            yield arg, {_NONZERO}


def _positive_activation(node: Basic) -> bool:
    """An activation defined for positive arguments only (log, as its record says)."""
    if not isinstance(node, Elementwise):
        return False
    record, prime = record_of(type(node))
    return record.positive_argument and not prime


def _is_square(matrix: MatrixExpr) -> bool:
    rows, cols = matrix.shape
    return rows == cols


def _draw(symbol: MatrixSymbol, tags: set) -> Draw:
    simplex = [t for t in tags if isinstance(t, tuple)]
    if simplex:
        return Draw(SIMPLEX, simplex[0][1], "the target of a softmax cross-entropy: each example's sums to 1")
    if _PROBABILITY in tags:
        return Draw(PROBABILITY, reason="a probability of a binary cross-entropy")
    if _NONNEGATIVE in tags:
        return Draw(NONNEGATIVE, reason="the target of a softmax cross-entropy (need not sum to 1)")
    if _INVERTIBLE in tags and _is_square(symbol):
        if _POSITIVE in tags:
            return Draw(INVERTIBLE_POSITIVE, reason="under a determinant, inverse or matrix power, and a log")
        return Draw(INVERTIBLE, reason="under a determinant, inverse or matrix power")
    if _POSITIVE in tags:
        return Draw(POSITIVE, reason="under a log or a root")
    if _NONZERO in tags:
        return Draw(NONZERO, reason="a divisor: away from 0")
    return Draw(NORMAL)


def _scalar_draw(symbol: Symbol, tags: set) -> Draw:
    if symbol.is_integer:
        return Draw(INTEGER, reason="an integer symbol")
    if _POSITIVE in tags or symbol.is_nonnegative:
        return Draw(POSITIVE, reason="a positive symbol")
    if _NONZERO in tags:
        return Draw(NONZERO, reason="a divisor: away from 0")
    return Draw(NORMAL)


def sample(draws: Mapping[Basic, Draw], dims: Mapping, rng: np.random.Generator) -> dict[str, Value]:
    """Random values for every symbol in ``draws`` (from :func:`domain`), keyed by name."""
    sizes = Program([], dims)
    return {str(symbol.name): draw.sample(rng, sizes.shape(symbol) if isinstance(symbol, MatrixExpr) else ())
            for symbol, draw in draws.items()}


def canonical_dims(*exprs: Basic, first: int = 2) -> dict[Symbol, int]:
    """Small distinct sizes (2, 3, 4 ... by name) for the dimension symbols of ``exprs``, so that a
    transposed product cannot fit where the right one does; every matrix at least 1 x 1 and every
    slice, block and entry in range (``X[:, 2:]`` of an N x D ``X`` makes D at least 3)."""
    shapes = [d for expr in exprs for node in _dag(expr) if isinstance(node, MatrixExpr) and isinstance(node, LEAF_TYPES)
              for d in node.shape]
    symbols = sorted({s for d in shapes for s in sympify(d).free_symbols}, key=lambda s: s.name)

    def smallest_free(symbol, least, taken):
        return next(n for n in count(max(least, first)) if n not in taken)

    return fit_dims(symbols, requirements(*exprs), smallest_free)
