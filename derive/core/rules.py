"""One local differentiation rule per operation, in a table keyed by SymPy class.

A rule is ``rule(node, out, upstream) -> one entry per argument of node``: the contribution of this
node to the gradient of that argument, or ``None`` where no gradient flows (a dimension, a
constant parameter). ``node`` has its arguments already replaced by their names, ``out`` stands for
the node's own value (so ``sigmoid'`` is written with the output) and ``upstream`` is dL/d(node).
An entry may be a :class:`Pullback` that also carries the local factor, for the derivation sheet.
Beside each pullback sits its tangent (forward-mode) rule, ``tangent(node, out, tangents) -> d(node)``
(:func:`tangent_of`): what the second-order pass (:mod:`.second_order`) applies to the forward
quantities and to the pullbacks' own results, which are built of the table's operations again.

The table is the documentation of what is supported: :func:`supported` lists it, and
:func:`rule_for` finds a rule through the class's MRO, so a subclass inherits its parent's rule.
Nothing here knows about graphs or printing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
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
    KroneckerProduct,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    Max,
    Min,
    Mul,
    OneMatrix,
    Piecewise,
    Pow,
    S,
    Sum,
    Trace,
    Transpose,
    ZeroMatrix,
    log,
)
from sympy.core.function import ArgumentIndexError
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from ..errors import UnsupportedOperation
from .activations import log as log_
from .algebra import embed, entry, hadamard, hadamard_power, mat_add, mat_mul, one_minus, submatrix, transpose
from .canonical import Blocks, Entries
from .elementwise import Elementwise, activations
from .losses import BinaryCrossEntropy, SoftmaxCrossEntropy, SquaredError
from .pairing import Pairing
from .shapes import blocks_fit, equal_shapes, inner_dims_match, square
from .softmax import log_softmax, softmax


class Pullback(NamedTuple):
    """A contribution to an argument's gradient, with the local factor it was made from."""

    result: Basic
    local: Basic | None = None


@dataclass(frozen=True)
class Rule:
    """A registered rule and every fact about its operation: the function, what it is in words and as
    a user writes it, the formula it applies (LaTeX for sheets, data: ``formula_for`` picks one by
    node where a rule has several forms), its shape check, and whether it is linear (a product, sum
    or transpose, which the naming of intermediates treats as bookkeeping)."""

    apply: Callable
    name: str
    spelling: str | Callable[[], str]
    formula: str
    diagonal: bool = False  # the local Jacobian is diagonal: applied as a Hadamard product
    formula_for: Callable | None = None
    shapes: Callable[[Basic], None] | None = None   # raises a ShapeError where the arguments do not fit
    linear: bool = False
    # the forward-mode (jvp) rule: tangent(node, out, tangents) -> d(node) from its arguments' tangents
    # (a zero for each argument that does not move); what the second-order (R-operator) pass applies
    tangent: Callable | None = None

    def formula_of(self, node: Basic) -> str:
        return self.formula if self.formula_for is None else self.formula_for(node)

    @property
    def described(self) -> str:
        spelling = self.spelling() if callable(self.spelling) else self.spelling
        return f"{self.name} {spelling}"


RULES: dict[type, Rule] = {}

# The step that starts the sweep when the loss is a (1 x 1) parameter itself.
LOSS_ITSELF = Rule(apply=None, name="the loss itself", spelling="", formula=r"dL/dL = 1")


def register(*types: type, name: str, spelling: str | Callable[[], str], formula: str, diagonal: bool = False,
             formula_for: Callable | None = None, shapes: Callable | None = None, linear: bool = False):
    """Add the decorated function to the table for each of ``types``."""

    def add(apply: Callable) -> Callable:
        for cls in types:
            RULES[cls] = Rule(apply, name, spelling, formula, diagonal, formula_for, shapes, linear)
        return apply

    return add


def tangent_of(*types: type):
    """Attach the decorated function as the tangent rule of each of ``types``' registered rules; it
    sits beside the pullback it belongs to. ``tangent(node, out, tangents)`` receives one tangent per
    argument of ``node`` (a zero where the argument does not move) and returns the node's own."""

    def add(tangent: Callable) -> Callable:
        for cls in types:
            RULES[cls] = replace(RULES[cls], tangent=tangent)
        return tangent

    return add


def is_zero(value) -> bool:
    """A tangent that does not move: a zero matrix or the number 0."""
    return value is None or isinstance(value, ZeroMatrix) or (not isinstance(value, MatrixExpr) and value == 0)


def _total(terms: list) -> Basic | None:
    """The sum of the non-zero tangent terms, or None when none is left."""
    kept = [t for t in terms if not is_zero(t)]
    return mat_add(*kept) if kept else None


def _each_moving(node, tangents, term: Callable) -> Basic | None:
    """Product rule: the sum over the arguments that move of ``term(k, tangent_k)``."""
    return _total([term(k, d) for k, d in enumerate(tangents) if not is_zero(d)])


def _scalar_tangent(pullback: Callable) -> Callable:
    """The tangent of a node with a scalar value, read off its pullback at upstream 1:
    d(node) = sum_k <d(node)/d(arg_k), d(arg_k)>. A loss's and a pairing's second derivatives come from
    the rules their gradients are made of."""

    def tangent(node, out, tangents):
        grads = pullback(node, out, S.One)
        terms = []
        for arg, grad, d in zip(node.args, grads, tangents):
            if is_zero(d):
                continue
            if grad is None:
                raise UnsupportedOperation(f"{type(node).__name__} in {node} has no derivative for its argument "
                                           f"{arg}, which moves along the directions")
            grad = grad.result if isinstance(grad, Pullback) else grad
            terms.append(_inner(d, grad) if isinstance(d, MatrixExpr) else grad * d)
        return _total(terms)

    return tangent


def find_rule(node: Basic) -> Rule | None:
    """The rule for ``node``, or None where there is none (or the operation is refused): the graph
    asks it of nodes that may never need differentiating (a constant part of the loss)."""
    for cls in type(node).__mro__:
        if cls in REFUSED:
            return None
        if cls in RULES:
            return RULES[cls]
    return None


def rule_for(node: Basic) -> Rule:
    """The rule for ``node``'s class or its nearest registered base class."""
    for cls in type(node).__mro__:
        if cls in REFUSED:
            what, hint = REFUSED[cls]
            raise unsupported(what(node), hint)
        if cls in RULES:
            return RULES[cls]
    raise unsupported(f"the operation {type(node).__name__}, in {node}", "")


def unsupported(what: str, hint: str) -> UnsupportedOperation:
    """The error for an operation without a rule: what it is in the user's words, and what is supported."""
    return UnsupportedOperation(f"no differentiation rule for {what}{hint}; supported operations: "
                                + "; ".join(supported()))


# Operations met in networks that have no rule, described as the user wrote them. Checked before the
# table: Piecewise is a Function, and would otherwise get the scalar-function rule.
REFUSED: dict[type, tuple[Callable, str]] = {
    KroneckerProduct: (lambda n: f"a Kronecker product {n}", ""),
    ElementwiseApplyFunction: (
        lambda n: f"a function applied entry by entry with applyfunc, {n}",
        (" (write it with derive's elementwise functions, relu(A), sigmoid(A), tanh(A), exp(A), log(A) ..., "
         "or with HadamardPower(A, p) and HadamardProduct)")),
    Max: (lambda n: f"a maximum {n}", " (relu(A) is max(A, 0) entry by entry)"),
    Min: (lambda n: f"a minimum {n}", " (relu is max(A, 0) entry by entry; min(A, 0) is A - relu(A))"),
    Piecewise: (lambda n: f"a piecewise function {n}",
                " (write it with derive's relu, leaky_relu or elu, whose derivatives are known)"),
    Sum: (lambda n: f"an index sum {n}", " (write the 1 x 1 product itself, (x.T*A*x), or Trace(...))"),
}


def supported() -> list[str]:
    """The operations that have a rule, as a user writes them: the table's documentation."""
    return list(dict.fromkeys(rule.described for rule in RULES.values()))


def _sum_entries(matrix: Basic) -> Basic:
    """Sum of all entries, as the 1 x 1 product 1^T M 1 read as a scalar."""
    rows, cols = matrix.shape
    return MatrixElement(mat_mul(OneMatrix(1, rows), matrix, OneMatrix(cols, 1)), 0, 0)


def _inner(upstream: Basic, matrix: Basic) -> Basic:
    """<G, M> = sum of the entries of G ⊙ M: the gradient of a scalar factor of a matrix."""
    return _sum_entries(hadamard(upstream, matrix))


# --- matrix algebra ---------------------------------------------------------------------------

@register(MatMul, name="matrix product", spelling="A*B (with scalar factors, c*A)",
          formula=r"dA = G B^T,\quad dB = A^T G", shapes=inner_dims_match, linear=True)
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


@tangent_of(MatMul)
def matmul_tangent(node, out, tangents):   # d(AB) = dA B + A dB, a scalar factor's too
    return _each_moving(node, tangents, lambda k, d: mat_mul(*node.args[:k], d, *node.args[k + 1:]))


@register(MatAdd, name="sum", spelling="A + B", formula=r"dA = G,\quad dB = G", shapes=equal_shapes("sum"),
          linear=True)
def matadd(node, out, upstream):
    return [upstream] * len(node.args)


@tangent_of(MatAdd)
def matadd_tangent(node, out, tangents):
    return _total(list(tangents))


@register(Add, name="scalar sum", spelling="a + b", formula=r"da = g,\quad db = g")
def add(node, out, upstream):
    return [upstream] * len(node.args)


@tangent_of(Add)
def add_tangent(node, out, tangents):
    kept = [d for d in tangents if not is_zero(d)]
    return Add(*kept) if kept else None


@register(Transpose, name="transpose", spelling="A.T", formula=r"dA = G^T", linear=True)
def transpose_rule(node, out, upstream):
    return [transpose(upstream)]


@tangent_of(Transpose)
def transpose_tangent(node, out, tangents):
    return transpose(tangents[0])


@register(HadamardProduct, name="Hadamard product", spelling="HadamardProduct(A, B)", formula=r"dA = G \odot B",
          diagonal=True, shapes=equal_shapes("Hadamard product"))
def hadamard_rule(node, out, upstream):
    grads = []
    for k in range(len(node.args)):
        others = hadamard(*(node.args[:k] + node.args[k + 1:]))
        grads.append(Pullback(hadamard(upstream, others), others))
    return grads


@tangent_of(HadamardProduct)
def hadamard_tangent(node, out, tangents):   # d(A ⊙ B) = dA ⊙ B + A ⊙ dB
    return _each_moving(node, tangents, lambda k, d: hadamard(*node.args[:k], d, *node.args[k + 1:]))


@register(HadamardPower, name="Hadamard power", spelling="HadamardPower(A, p)",
          formula=r"dA = G \odot p A^{\circ (p-1)}", diagonal=True)
def hadamard_power_rule(node, out, upstream):
    base, power = node.args
    local = mat_mul(power, hadamard_power(base, power - 1))
    return [Pullback(hadamard(upstream, local), local), _inner(upstream, hadamard(out, log_(base)))]


@tangent_of(HadamardPower)
def hadamard_power_tangent(node, out, tangents):   # d(A^p) = p A^(p-1) ⊙ dA + A^p ⊙ log(A) dp
    (base, power), (d_base, d_power) = node.args, tangents
    return _total([None if is_zero(d_base) else hadamard(mat_mul(power, hadamard_power(base, power - 1)), d_base),
                   None if is_zero(d_power) else mat_mul(d_power, hadamard(out, log_(base)))])


@register(MatPow, name="matrix power", spelling="A**k (k an integer; A**-k is Inverse(A)**k)",
          formula=r"dA = \sum_{i} (A^i)^T G (A^{k-1-i})^T")
def matpow(node, out, upstream):
    base, power = node.args
    if not (isinstance(power, Integer) and power >= 1):
        # negative and zero integer powers were rewritten before the graph was built (derive.canonical)
        raise UnsupportedOperation(f"matrix power {node}: only integer powers have a rule, not {power}")
    k = int(power)
    terms = [mat_mul(transpose(base) ** i if i else Identity(base.rows), upstream,
                     transpose(base) ** (k - 1 - i) if k - 1 - i else Identity(base.rows))
             for i in range(k)]
    return [mat_add(*terms), None]


@tangent_of(MatPow)
def matpow_tangent(node, out, tangents):   # d(A^k) = sum_i A^i dA A^(k-1-i)
    (base, power), d = node.args, tangents[0]
    if not is_zero(tangents[1]):
        raise UnsupportedOperation(f"matrix power {node}: its exponent {power} cannot move")
    k = int(power)
    return _total([mat_mul(*[base] * i, d, *[base] * (k - 1 - i)) for i in range(k)])


@register(Inverse, name="inverse", spelling="Inverse(A)", formula=r"dA = -A^{-T} G A^{-T}", shapes=square)
def inverse(node, out, upstream):
    out_t = transpose(out)
    return [mat_mul(S.NegativeOne, out_t, upstream, out_t)]


@tangent_of(Inverse)
def inverse_tangent(node, out, tangents):   # d(A^-1) = -A^-1 dA A^-1
    return mat_mul(S.NegativeOne, out, tangents[0], out)


@register(Trace, name="trace", spelling="Trace(A)", formula=r"dA = g I", shapes=square)
def trace(node, out, upstream):
    return [Pullback(mat_mul(upstream, Identity(node.arg.rows)), Identity(node.arg.rows))]


@tangent_of(Trace)
def trace_tangent(node, out, tangents):
    return Trace(tangents[0])


@register(Determinant, name="determinant", spelling="Determinant(A)", formula=r"dA = g \det(A) A^{-T}",
          shapes=square)
def determinant(node, out, upstream):
    local = mat_mul(out, transpose(Inverse(node.arg)))
    return [Pullback(mat_mul(upstream, local), local)]


@tangent_of(Determinant)
def determinant_tangent(node, out, tangents):   # d det(A) = det(A) tr(A^-1 dA), Jacobi's formula
    return out * Trace(mat_mul(Inverse(node.arg), tangents[0]))


@register(MatrixElement, name="entry", spelling="A[i, j] (integer i, j)", formula=r"dA = g E_{ij}")
def matrix_element(node, out, upstream):
    matrix, i, j = node.args
    if not (isinstance(i, Integer) and isinstance(j, Integer)):
        raise UnsupportedOperation(
            f"entry {node} of {matrix}: only entries at integer positions are supported, not at ({i}, {j}); "
            "for a sum over entries use a product with a ones-matrix, 1^T A 1")
    # g at (i, j), zeros elsewhere: an explicit 1 x 1 matrix placed inside zero blocks
    return [embed(Entries(1, upstream), matrix.shape, (i, i + 1), (j, j + 1)), None, None]


@tangent_of(MatrixElement)
def matrix_element_tangent(node, out, tangents):
    return entry(tangents[0], *node.args[1:])


# --- blocks, slices and explicit matrices (derive.canonical writes SymPy's forms as these) ---------

@register(Blocks, name="block matrix", spelling="BlockMatrix([[A, B], [C, D]])",
          formula=r"dA = G_{[A]}\ \text{(the block of } G \text{ where } A \text{ sits)}", shapes=blocks_fit)
def blocks(node, out, upstream):
    return [None] + [submatrix(upstream, rows, cols) for rows, cols in node.spans()]


@tangent_of(Blocks)
def blocks_tangent(node, out, tangents):
    return Blocks(node.args[0], *[ZeroMatrix(*b.shape) if is_zero(d) else d
                                  for b, d in zip(node.args[1:], tangents[1:])])


@register(MatrixSlice, name="slice", spelling="A[a:b, c:d]",
          formula=r"dA = G \text{ in the sliced rows and columns, } 0 \text{ elsewhere}")
def matrix_slice(node, out, upstream):
    parent, rows, cols = node.args
    if rows[2] != 1 or cols[2] != 1:
        raise UnsupportedOperation(f"the slice {node} has a step; only contiguous slices A[a:b, c:d] are supported")
    return [embed(upstream, parent.shape, rows[:2], cols[:2]), None, None]


@tangent_of(MatrixSlice)
def matrix_slice_tangent(node, out, tangents):
    return submatrix(tangents[0], node.args[1][:2], node.args[2][:2])


@register(Entries, name="explicit matrix", spelling="Matrix([[a, b], [c, d]]) (entries using parameters)",
          formula=r"da_{ij} = G_{ij}")
def explicit_matrix(node, out, upstream):
    return [None] + [entry(upstream, i, j) for i, j in node.positions()]


@tangent_of(Entries)
def explicit_matrix_tangent(node, out, tangents):
    return Entries(node.args[0], *[S.Zero if is_zero(d) else d for d in tangents[1:]])


# --- scalar algebra ---------------------------------------------------------------------------

@register(Mul, name="scalar product", spelling="a*b", formula=r"da = g b,\quad db = g a")
def mul(node, out, upstream):
    return [upstream * Mul(*(node.args[:k] + node.args[k + 1:])) for k in range(len(node.args))]


@tangent_of(Mul)
def mul_tangent(node, out, tangents):
    return _each_moving(node, tangents, lambda k, d: d * Mul(*(node.args[:k] + node.args[k + 1:])))


@register(Pow, name="scalar power", spelling="a**p", formula=r"da = g\, p\, a^{p-1}")
def power(node, out, upstream):
    base, exponent = node.args
    return [upstream * exponent * base ** (exponent - 1), upstream * out * log(base)]


@tangent_of(Pow)
def power_tangent(node, out, tangents):
    return _each_moving(node, tangents, lambda k, d: power(node, out, d)[k])


@register(Function, name="scalar function", spelling="f(a) (sin, cos, exp, log, tanh ... of a scalar)",
          formula=r"da = g f'(a)")
def scalar_function(node, out, upstream):
    return [_partial(node, k, upstream) for k in range(len(node.args))]


def _partial(node, k: int, upstream):
    try:
        return upstream * node.fdiff(k + 1)
    except ArgumentIndexError:  # no derivative for this argument (leaky_relu's alpha): say so upstream
        return None


@tangent_of(Function)
def scalar_function_tangent(node, out, tangents):
    def term(k, d):
        partial = _partial(node, k, d)
        if partial is None:
            raise UnsupportedOperation(f"{node} has no derivative for its argument {node.args[k]}, which moves")
        return partial
    return _each_moving(node, tangents, term)


# --- elementwise functions and softmax --------------------------------------------------------

def _activations_spelled() -> str:
    return ", ".join(f"{name}(A)" for name in activations())   # every registered activation's record


@register(Elementwise, name="elementwise function", spelling=_activations_spelled,
          formula=r"dA = G \odot f'(A)", diagonal=True)
def elementwise(node, out, upstream):
    local = node.derivative(out)
    return [Pullback(hadamard(upstream, local), local)] + [None] * len(node.params)


@tangent_of(Elementwise)
def elementwise_tangent(node, out, tangents):   # d f(A) = f'(A) ⊙ dA; f' is itself an Elementwise
    if not all(is_zero(d) for d in tangents[1:]):
        raise UnsupportedOperation(f"{node}: the parameters of {type(node).__name__} cannot move")
    return hadamard(node.derivative(out), tangents[0])


def _broadcast_sum(matrix, axis: int):
    """Sum along ``axis`` (1: over each row's entries), spread back over that axis."""
    rows, cols = matrix.shape
    if axis == 1:
        return mat_mul(matrix, OneMatrix(cols, 1), OneMatrix(1, cols))
    return mat_mul(OneMatrix(rows, 1), OneMatrix(1, rows), matrix)


@register(softmax, name="softmax", spelling="softmax(Z)",
          formula=r"dZ = P \odot (G - (G \odot P) \mathbf{1}\mathbf{1}^T)")
def softmax_rule(node, out, upstream):
    centred = mat_add(upstream, mat_mul(S.NegativeOne, _broadcast_sum(hadamard(upstream, out), node.axis)))
    return [hadamard(out, centred), None]


@tangent_of(softmax)
def softmax_tangent(node, out, tangents):   # softmax's Jacobian is symmetric: the jvp is the vjp
    return softmax_rule(node, out, tangents[0])[0]


@register(log_softmax, name="log-softmax", spelling="log_softmax(Z)",
          formula=r"dZ = G - \mathrm{softmax}(Z) \odot (G \mathbf{1}\mathbf{1}^T)")
def log_softmax_rule(node, out, upstream):
    probabilities = softmax(node.arg, node.axis)
    return [mat_add(upstream, mat_mul(S.NegativeOne, hadamard(probabilities, _broadcast_sum(upstream, node.axis)))),
            None]


@tangent_of(log_softmax)
def log_softmax_tangent(node, out, tangents):   # dZ - (softmax(Z) ⊙ dZ) 1 1^T
    centred = _broadcast_sum(hadamard(softmax(node.arg, node.axis), tangents[0]), node.axis)
    return mat_add(tangents[0], mat_mul(S.NegativeOne, centred))


@register(Pairing, name="pairing", spelling="<G, Y> (derive.vjp: a layer's output with its upstream gradient)",
          formula=r"dY = g G", shapes=equal_shapes("pairing"))
def pairing(node, out, upstream):
    upstream_gradient, output = node.args
    return [Pullback(mat_mul(upstream, output)), Pullback(mat_mul(upstream, upstream_gradient), upstream_gradient)]


# --- losses -----------------------------------------------------------------------------------

@register(SquaredError, name="squared error", spelling="mse(Yhat, Y)", formula=r"d\hat Y = 2 s (\hat Y - Y)")
def squared_error(node, out, upstream):
    prediction, target, scale = node.args
    residual = mat_add(prediction, mat_mul(S.NegativeOne, target))
    return [mat_mul(2 * scale * upstream, residual), mat_mul(-2 * scale * upstream, residual), None]


@register(BinaryCrossEntropy, name="binary cross-entropy", spelling="bce(P, Y)",
          formula=r"dP = s (P - Y) \oslash (P \odot (1 - P))")
def binary_cross_entropy(node, out, upstream):
    p, y, scale = node.args
    residual = mat_add(p, mat_mul(S.NegativeOne, y))
    d_p = hadamard(mat_mul(scale * upstream, residual), HadamardPower(p, -1), HadamardPower(one_minus(p), -1))
    d_y = mat_mul(scale * upstream, mat_add(log_(one_minus(p)), mat_mul(S.NegativeOne, log_(p))))
    return [d_p, d_y, None]


def _cross_entropy_formula(node) -> str:
    if node.targets_sum_to_one:
        return r"dZ = s (\mathrm{softmax}(Z) - Y)"
    if node.axis == 1:
        return r"dZ = s (\mathrm{softmax}(Z) \odot (Y \mathbf{1}\mathbf{1}^T) - Y)"
    return r"dZ = s (\mathrm{softmax}(Z) \odot (\mathbf{1}\mathbf{1}^T Y) - Y)"


@register(SoftmaxCrossEntropy, name="softmax cross-entropy", spelling="cross_entropy(Z, Y)",
          formula=r"dZ = s (\mathrm{softmax}(Z) \odot (Y \mathbf{1}\mathbf{1}^T) - Y)",
          formula_for=_cross_entropy_formula)
def softmax_cross_entropy(node, out, upstream):
    logits, target, scale, axis = node.args[:4]
    probabilities = softmax(logits, axis)
    # -s sum Y log softmax(Z): each example's softmax is weighted by the sum of its target; that sum is
    # 1 for one-hot or label-smoothed targets, which the user declares with targets_sum_to_one=True
    weighted = probabilities if node.targets_sum_to_one else hadamard(probabilities, _broadcast_sum(target, int(axis)))
    residual = mat_add(weighted, mat_mul(S.NegativeOne, target))
    return [mat_mul(scale * upstream, residual), mat_mul(-scale * upstream, log_softmax(logits, axis)), None, None,
            None]


# The scalar-valued operations' tangents, from their pullbacks (see _scalar_tangent).
for _operation, _pullback in ((Pairing, pairing), (SquaredError, squared_error),
                              (BinaryCrossEntropy, binary_cross_entropy),
                              (SoftmaxCrossEntropy, softmax_cross_entropy)):
    tangent_of(_operation)(_scalar_tangent(_pullback))
