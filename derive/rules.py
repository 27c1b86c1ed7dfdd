"""One local differentiation rule per operation, in a table keyed by SymPy class.

A rule is ``rule(node, out, upstream) -> one entry per argument of node``: the contribution of this
node to the gradient of that argument, or ``None`` where no gradient flows (a dimension, a
constant parameter). ``node`` has its arguments already replaced by their names, ``out`` stands for
the node's own value (so ``sigmoid'`` is written with the output) and ``upstream`` is dL/d(node).
An entry may be a :class:`Pullback` that also carries the local factor, for the derivation sheet.

The table is the documentation of what is supported: :func:`supported` lists it, and
:func:`rule_for` finds a rule through the class's MRO, so a subclass inherits its parent's rule.
Nothing here knows about graphs or printing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from sympy import (
    Add,
    Basic,
    Determinant,
    Function,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    Mul,
    OneMatrix,
    Piecewise,
    Pow,
    S,
    Trace,
    Transpose,
    log,
)
from sympy.core.function import ArgumentIndexError
from sympy.matrices.expressions.matexpr import MatrixElement

from .algebra import hadamard, hadamard_power, mat_add, mat_mul, one_minus, transpose
from .errors import UnsupportedOperation
from .functions import (
    BinaryCrossEntropy,
    Elementwise,
    SoftmaxCrossEntropy,
    SquaredError,
    log_,
    log_softmax,
    softmax,
)


class Pullback(NamedTuple):
    """A contribution to an argument's gradient, with the local factor it was made from."""

    result: Basic
    local: Basic | None = None


@dataclass(frozen=True)
class Rule:
    """A registered rule: the function, a short name and the formula it applies (for sheets)."""

    apply: Callable
    name: str
    formula: str
    diagonal: bool = False  # the local Jacobian is diagonal: applied as a Hadamard product


RULES: dict[type, Rule] = {}


def register(*types: type, name: str, formula: str, diagonal: bool = False):
    """Add the decorated function to the table for each of ``types``."""

    def add(apply: Callable) -> Callable:
        for cls in types:
            RULES[cls] = Rule(apply, name, formula, diagonal)
        return apply

    return add


def rule_for(node: Basic) -> Rule:
    """The rule for ``node``'s class or its nearest registered base class."""
    for cls in type(node).__mro__:
        if cls in RULES:
            return RULES[cls]
    hint = HINTS.get(type(node).__name__, "")
    raise UnsupportedOperation(
        f"no differentiation rule for {type(node).__name__} (in {node}){hint}; supported operations: "
        + ", ".join(supported()))


HINTS = {
    "Sum": " (indexing a matrix product, as in (x.T*A*x)[0, 0], expands it into a Sum: use the 1 x 1 "
           "matrix itself or Trace(x.T*A*x))",
}


def supported() -> list[str]:
    """Names of the classes that have a rule, for error messages and the documentation."""
    return sorted({cls.__name__ for cls in RULES})


def _sum_entries(matrix: Basic) -> Basic:
    """Sum of all entries, as the 1 x 1 product 1^T M 1 read as a scalar."""
    rows, cols = matrix.shape
    return MatrixElement(mat_mul(OneMatrix(1, rows), matrix, OneMatrix(cols, 1)), 0, 0)


def _inner(upstream: Basic, matrix: Basic) -> Basic:
    """<G, M> = sum of the entries of G ⊙ M: the gradient of a scalar factor of a matrix."""
    return _sum_entries(hadamard(upstream, matrix))


# --- matrix algebra ---------------------------------------------------------------------------

@register(MatMul, name="matrix product", formula=r"dA = G B^T,\quad dB = A^T G")
def matmul(node, out, upstream):
    scalars = [a for a in node.args if not isinstance(a, MatrixExpr)]
    matrices = [a for a in node.args if isinstance(a, MatrixExpr)]
    coeff = Mul(*scalars)
    grads, position = [], 0
    for index, arg in enumerate(node.args):
        if not isinstance(arg, MatrixExpr):
            # the other scalar factors, by position: a factor may appear twice (Trace(W) Trace(W) V)
            others = Mul(*[a for k, a in enumerate(node.args) if k != index and not isinstance(a, MatrixExpr)])
            grads.append(Pullback(_inner(upstream, mat_mul(others, *matrices))))
            continue
        left, right = matrices[:position], matrices[position + 1:]
        position += 1
        left_t = transpose(mat_mul(*left)) if left else None
        right_t = transpose(mat_mul(*right)) if right else None
        factors = [f for f in (left_t, upstream, right_t) if f is not None]
        local = (left_t if right_t is None else right_t if left_t is None else None)
        grads.append(Pullback(mat_mul(coeff, *factors), local))
    return grads


@register(MatAdd, name="sum", formula=r"dA = G,\quad dB = G")
def matadd(node, out, upstream):
    return [upstream] * len(node.args)


@register(Add, name="scalar sum", formula=r"da = g,\quad db = g")
def add(node, out, upstream):
    return [upstream] * len(node.args)


@register(Transpose, name="transpose", formula=r"dA = G^T")
def transpose_rule(node, out, upstream):
    return [transpose(upstream)]


@register(HadamardProduct, name="Hadamard product", formula=r"dA = G \odot B", diagonal=True)
def hadamard_rule(node, out, upstream):
    grads = []
    for k in range(len(node.args)):
        others = hadamard(*(node.args[:k] + node.args[k + 1:]))
        grads.append(Pullback(hadamard(upstream, others), others))
    return grads


@register(HadamardPower, name="Hadamard power", formula=r"dA = G \odot p A^{\circ (p-1)}", diagonal=True)
def hadamard_power_rule(node, out, upstream):
    base, power = node.args
    local = mat_mul(power, hadamard_power(base, power - 1))
    return [Pullback(hadamard(upstream, local), local), _inner(upstream, hadamard(out, log_(base)))]


@register(MatPow, name="matrix power", formula=r"dA = \sum_{i} (A^i)^T G (A^{k-1-i})^T")
def matpow(node, out, upstream):
    base, power = node.args
    if not (isinstance(power, Integer) and power >= 1):
        raise UnsupportedOperation(f"matrix power {node}: only positive integer powers (use Inverse for -1)")
    k = int(power)
    terms = [mat_mul(transpose(base) ** i if i else Identity(base.rows), upstream,
                     transpose(base) ** (k - 1 - i) if k - 1 - i else Identity(base.rows))
             for i in range(k)]
    return [mat_add(*terms), None]


@register(Inverse, name="inverse", formula=r"dA = -A^{-T} G A^{-T}")
def inverse(node, out, upstream):
    out_t = transpose(out)
    return [mat_mul(S.NegativeOne, out_t, upstream, out_t)]


@register(Trace, name="trace", formula=r"dA = g I")
def trace(node, out, upstream):
    return [Pullback(mat_mul(upstream, Identity(node.arg.rows)), Identity(node.arg.rows))]


@register(Determinant, name="determinant", formula=r"dA = g \det(A) A^{-T}")
def determinant(node, out, upstream):
    local = mat_mul(out, transpose(Inverse(node.arg)))
    return [Pullback(mat_mul(upstream, local), local)]


@register(MatrixElement, name="entry of a 1 x 1 matrix", formula=r"dA = g")
def matrix_element(node, out, upstream):
    matrix = node.args[0]
    if matrix.shape != (1, 1):
        raise UnsupportedOperation(
            f"entry {node} of the {matrix.shape[0]} x {matrix.shape[1]} matrix {matrix}: only entries of "
            "1 x 1 matrices (used as scalars) are supported; use a sum of entries or a product instead")
    return [mat_mul(upstream, OneMatrix(1, 1)), None, None]


# --- scalar algebra ---------------------------------------------------------------------------

@register(Mul, name="scalar product", formula=r"da = g b,\quad db = g a")
def mul(node, out, upstream):
    return [upstream * Mul(*(node.args[:k] + node.args[k + 1:])) for k in range(len(node.args))]


@register(Pow, name="scalar power", formula=r"da = g\, p\, a^{p-1}")
def power(node, out, upstream):
    base, exponent = node.args
    return [upstream * exponent * base ** (exponent - 1), upstream * out * log(base)]


@register(Function, name="scalar function", formula=r"da = g f'(a)")
def scalar_function(node, out, upstream):
    return [_partial(node, k, upstream) for k in range(len(node.args))]


def _partial(node, k: int, upstream):
    try:
        return upstream * node.fdiff(k + 1)
    except ArgumentIndexError:  # no derivative for this argument (leaky_relu's alpha): say so upstream
        return None


@register(Piecewise, name="piecewise function (unsupported)", formula="")
def piecewise(node, out, upstream):
    raise UnsupportedOperation(
        f"no differentiation rule for Piecewise ({node}); write it with derive's relu, leaky_relu or elu, "
        "whose derivatives are known")


# --- elementwise functions and softmax --------------------------------------------------------

@register(Elementwise, name="elementwise function", formula=r"dA = G \odot f'(A)", diagonal=True)
def elementwise(node, out, upstream):
    local = node.derivative(out)
    return [Pullback(hadamard(upstream, local), local)] + [None] * len(node.params)


def _broadcast_sum(matrix, axis: int):
    """Sum along ``axis`` (1: over each row's entries), spread back over that axis."""
    rows, cols = matrix.shape
    if axis == 1:
        return mat_mul(matrix, OneMatrix(cols, 1), OneMatrix(1, cols))
    return mat_mul(OneMatrix(rows, 1), OneMatrix(1, rows), matrix)


@register(softmax, name="softmax", formula=r"dZ = P \odot (G - (G \odot P) \mathbf{1}\mathbf{1}^T)")
def softmax_rule(node, out, upstream):
    centred = mat_add(upstream, mat_mul(S.NegativeOne, _broadcast_sum(hadamard(upstream, out), node.axis)))
    return [hadamard(out, centred), None]


@register(log_softmax, name="log-softmax", formula=r"dZ = G - \mathrm{softmax}(Z) \odot (G \mathbf{1}\mathbf{1}^T)")
def log_softmax_rule(node, out, upstream):
    probabilities = softmax(node.arg, node.axis)
    return [mat_add(upstream, mat_mul(S.NegativeOne, hadamard(probabilities, _broadcast_sum(upstream, node.axis)))),
            None]


# --- losses -----------------------------------------------------------------------------------

@register(SquaredError, name="squared error", formula=r"d\hat Y = 2 s (\hat Y - Y)")
def squared_error(node, out, upstream):
    prediction, target, scale = node.args
    residual = mat_add(prediction, mat_mul(S.NegativeOne, target))
    return [mat_mul(2 * scale * upstream, residual), mat_mul(-2 * scale * upstream, residual), None]


@register(BinaryCrossEntropy, name="binary cross-entropy",
          formula=r"dP = s (P - Y) \oslash (P \odot (1 - P))")
def binary_cross_entropy(node, out, upstream):
    p, y, scale = node.args
    residual = mat_add(p, mat_mul(S.NegativeOne, y))
    d_p = hadamard(mat_mul(scale * upstream, residual), HadamardPower(p, -1), HadamardPower(one_minus(p), -1))
    d_y = mat_mul(scale * upstream, mat_add(log_(one_minus(p)), mat_mul(S.NegativeOne, log_(p))))
    return [d_p, d_y, None]


@register(SoftmaxCrossEntropy, name="softmax cross-entropy", formula=r"dZ = s (\mathrm{softmax}(Z) - Y)")
def softmax_cross_entropy(node, out, upstream):
    logits, target, scale, axis = node.args
    residual = mat_add(softmax(logits, axis), mat_mul(S.NegativeOne, target))
    return [mat_mul(scale * upstream, residual), mat_mul(-scale * upstream, log_softmax(logits, axis)), None, None]
