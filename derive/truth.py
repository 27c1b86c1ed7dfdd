"""The independent numeric truth: SymPy matrix expressions evaluated in float64 NumPy, the domain a
loss's matrices are drawn from, and the check that every closed form of ``gradients`` passes.

* :func:`evaluate` (and :class:`Program`, which compiles expressions once and runs them at many
  points) walks the DAG, each shared node once, with one NumPy operation per SymPy node type.
  Activations are written here from their textbook definitions (GELU is x (1 + erf(x/√2))/2); a
  matrix function applied entry by entry is evaluated through its scalar SymPy definition
  (``relu(A)`` as ``Relu(a)``, ``relu'(A)`` as the derivative SymPy took of it), and any other
  matrix expression of concrete shape through SymPy's own ``as_explicit``.
* :func:`domain` says how to draw valid random values for each matrix of a loss (an invertible
  matrix under a determinant, positive entries under a log, probabilities for binary
  cross-entropy, targets on the simplex for softmax cross-entropy); :func:`sample` draws them.
* :func:`check_gradients` compares directional derivatives of the closed forms with central
  differences of the declared loss at random points of its domain, and raises
  :class:`~derive.errors.GradientMismatch` naming the parameter when they differ.

Nothing here reads derive's rule table (rules.py), its printers (printing.py) or its code
generator: a check built from them would share their mistakes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy import special
from sympy import (
    Abs,
    Add,
    Basic,
    BlockMatrix,
    Determinant,
    Dummy,
    Float,
    Function,
    HadamardPower,
    HadamardProduct,
    Heaviside,
    Identity,
    Integer,
    Inverse,
    KroneckerProduct,
    Lambda,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Max,
    Min,
    Mul,
    Number,
    OneMatrix,
    Piecewise,
    Pow,
    Symbol,
    Trace,
    Transpose,
    ZeroMatrix,
    acos,
    asin,
    atan,
    conjugate,
    cos,
    cosh,
    erf,
    erfc,
    exp,
    log,
    sign,
    sin,
    sinh,
    sympify,
    tan,
    tanh,
)
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core.numbers import NumberSymbol
from sympy.core.relational import Relational
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanAtom
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.adjoint import Adjoint as ConjugateTranspose
from sympy.matrices.expressions.matexpr import MatrixElement

from .canonical import Blocks, Entries
from .errors import (
    DeriveError,
    DimsError,
    GradientMismatch,
    InvalidArgument,
    ShapeError,
    UnsupportedOperation,
)
from .functions import (
    BinaryCrossEntropy,
    Elementwise,
    Elu,
    Gelu,
    LeakyRelu,
    NormalCdf,
    Relu,
    Sigmoid,
    Silu,
    SoftmaxCrossEntropy,
    Softplus,
    SquaredError,
    Step,
    log_softmax,
    sigmoid,
    softmax,
)

__all__ = ["Draw", "NumericCheck", "Program", "canonical_dims", "check_gradients", "domain", "evaluate", "sample"]

Value = float | np.ndarray


# =================================================================================================
# Evaluation
# =================================================================================================

def evaluate(expr: Basic, values: Mapping, dims: Mapping | None = None) -> Value:
    """The float64 value of ``expr``: a 2-D array for a matrix, a float for a scalar.

    ``values`` holds an array for each MatrixSymbol (and a number for each scalar symbol that is not
    a dimension), keyed by name or by the symbol; ``dims`` the size of each dimension symbol.
    """
    return Program([expr], dims or {}).run(values)[0]


class Program:
    """``exprs`` compiled at concrete ``dims`` into a list of NumPy operations, run at many points.

    ``bindings`` are (symbol, definition) pairs in an order where each definition uses only earlier
    symbols, such as a derivation's named intermediates and upstream gradients: each is evaluated
    once per run and read wherever its symbol appears.
    """

    def __init__(self, exprs: Sequence[Basic], dims: Mapping, bindings: Sequence[tuple[Basic, Basic]] = ()):
        self.sizes = {str(k): int(v) for k, v in dims.items()}
        self.slot: dict[Basic, int] = {}
        self.constants: dict[int, Value] = {}
        self.inputs: list[tuple[int, str, tuple | None]] = []    # (slot, name, shape; None: a scalar)
        self.steps: list[tuple[int, Callable, Basic, tuple[int, ...]]] = []
        self._children: dict[Basic, tuple] = {}
        self._stand_ins: dict[Basic, Basic] = {}   # a placeholder -> the node whose value it takes
        self._replaced: dict[Basic, Basic] = {}    # a node -> the expression evaluated in its place
        self._size_of: dict[Basic, int] = {}
        for symbol, definition in bindings:
            self.slot[symbol] = self._compile(definition)
        self.outputs = [self._compile(sympify(e)) for e in exprs]

    # --- running ---------------------------------------------------------------------------------

    def run(self, values: Mapping) -> list[Value]:
        by_name = {(k if isinstance(k, str) else str(k.name)): v for k, v in values.items()}
        memory: list = [None] * (len(self.constants) + len(self.inputs) + len(self.steps))
        for slot, value in self.constants.items():
            memory[slot] = value
        for slot, name, shape in self.inputs:
            memory[slot] = _input_value(by_name, name, shape)
        with np.errstate(all="ignore"):
            for slot, operation, node, args in self.steps:
                memory[slot] = operation(node, *[memory[a] for a in args])
        return [memory[s] for s in self.outputs]

    # --- compiling -------------------------------------------------------------------------------

    def _compile(self, root: Basic) -> int:
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.slot:
                continue
            if ready:
                self._emit(node)
                continue
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(self._children_of(node)) if child not in self.slot)
        return self.slot[root]

    def _new_slot(self, node: Basic) -> int:
        slot = len(self.constants) + len(self.inputs) + len(self.steps)
        self.slot[node] = slot
        return slot

    def size(self, dim) -> int:
        """A dimension (``N``, ``2``, ``N + 1``) at the program's dims."""
        if isinstance(dim, (int, Integer)):
            return int(dim)
        if dim not in self._size_of:
            self._size_of[dim] = self._concrete_size(sympify(dim))
        return self._size_of[dim]

    def _concrete_size(self, dim: Basic) -> int:
        concrete = dim.xreplace({s: Integer(self.sizes[s.name]) for s in dim.free_symbols
                                 if isinstance(s, Symbol) and s.name in self.sizes})
        if not concrete.is_Integer or int(concrete) < 0:
            missing = sorted(s.name for s in concrete.free_symbols)
            raise DimsError(f"no concrete size for the dimension {dim}: give dims for {', '.join(missing) or dim}")
        return int(concrete)

    def shape(self, matrix: MatrixExpr) -> tuple[int, int]:
        return self.size(matrix.shape[0]), self.size(matrix.shape[1])

    def _children_of(self, node: Basic) -> tuple:
        if node not in self._children:
            self._children[node] = self._find_children(node)
        return self._children[node]

    def _find_children(self, node: Basic) -> tuple:
        if node in self._stand_ins:
            return (self._stand_ins[node],)
        if isinstance(node, LEAF_TYPES):
            return ()
        if isinstance(node, MatrixBase):
            return tuple(node)
        if isinstance(node, BlockMatrix):
            return tuple(node.blocks)
        if isinstance(node, (Blocks, Entries)):  # derive's own spellings of the two, found in closed forms
            return node.args[1:]
        if isinstance(node, (MatrixElement, softmax, log_softmax)):
            return (node.args[0],)
        if _of_logits(node):
            return (node.prediction.arg, *node.args[1:3])
        if isinstance(node, (SquaredError, BinaryCrossEntropy, SoftmaxCrossEntropy)):
            return node.args[:3]
        if isinstance(node, Elementwise):
            return self._replace(node, *self._scalar_body(node))
        if _handler(node) is not None:
            return node.args
        return self._replace(node, self._expanded(node))

    def _replace(self, node: Basic, replacement: Basic, *also: Basic) -> tuple:
        self._replaced[node] = replacement
        return (*also, replacement)

    def _scalar_body(self, node: Elementwise) -> tuple:
        """``f(a)`` for a fresh placeholder ``a`` standing for the argument's entries."""
        placeholder = Dummy("a")
        self._stand_ins[placeholder] = node.arg
        body = sympify(node.scalar(placeholder, *node.params))
        if placeholder in body.free_symbols:
            return (body,)
        return body, node.arg    # a constant derivative (leaky_relu' at alpha = 1): broadcast it

    def _expanded(self, node: Basic) -> Basic:
        """``node`` written out by SymPy at the program's dims, on placeholders for its matrix args."""
        args = []
        for arg in node.args:
            if isinstance(arg, MatrixExpr):
                placeholder = MatrixSymbol(f"_truth_{len(self._stand_ins)}", *self.shape(arg))
                self._stand_ins[placeholder] = arg
                args.append(placeholder)
            else:
                args.append(self._at_dims(arg))
        try:
            rebuilt = node.func(*args)
            expanded = rebuilt.as_explicit() if isinstance(rebuilt, MatrixExpr) else rebuilt.doit()
        except Exception as error:  # whatever SymPy raises, say which node it was
            raise UnsupportedOperation(f"the numeric evaluator (derive.truth) cannot evaluate "
                                       f"{type(node).__name__} ({node}): {error}") from error
        if expanded == rebuilt and not isinstance(expanded, MatrixBase):
            raise UnsupportedOperation(f"the numeric evaluator (derive.truth) cannot evaluate {type(node).__name__} "
                                       f"({node}): SymPy does not write it out at concrete dims")
        return expanded

    def _at_dims(self, expr: Basic) -> Basic:
        if not isinstance(expr, Basic):
            return expr
        return expr.xreplace({s: Integer(self.sizes[s.name]) for s in expr.free_symbols
                              if isinstance(s, Symbol) and s.name in self.sizes})

    def _emit(self, node: Basic) -> None:
        if node in self._stand_ins:
            self.slot[node] = self.slot[self._stand_ins[node]]
        elif node in self._replaced:
            replacement = self._replaced[node]
            children = self._children_of(node)
            if len(children) == 1:
                self.slot[node] = self.slot[replacement]
            else:  # a constant in place of a matrix: spread over the argument's shape
                self._step(node, _broadcast, (children[0], replacement))
        elif isinstance(node, MatrixSymbol):
            self.inputs.append((self._new_slot(node), str(node.name), self.shape(node)))
        elif isinstance(node, (Identity, OneMatrix, ZeroMatrix)):
            rows, cols = self.shape(node)
            constant = np.eye(rows) if isinstance(node, Identity) else np.full((rows, cols), float(isinstance(node, OneMatrix)))
            self.constants[self._new_slot(node)] = constant
        elif isinstance(node, (Number, NumberSymbol)):
            self.constants[self._new_slot(node)] = float(node)
        elif isinstance(node, BooleanAtom):
            self.constants[self._new_slot(node)] = bool(node)
        elif isinstance(node, Symbol):
            if node.name in self.sizes:
                self.constants[self._new_slot(node)] = float(self.sizes[node.name])
            else:
                self.inputs.append((self._new_slot(node), node.name, None))
        elif isinstance(node, MatrixBase):
            self._step(node, _explicit, self._children_of(node))
        elif isinstance(node, BlockMatrix):
            self._step(node, _blocks, self._children_of(node))
        elif isinstance(node, Entries):
            self._step(node, _explicit, self._children_of(node))
        elif isinstance(node, Blocks):
            self._step(node, _grid, self._children_of(node))
        elif _of_logits(node):
            self._step(node, _binary_cross_entropy_of_logits, self._children_of(node))
        else:
            self._step(node, _handler(node), self._children_of(node))

    def _step(self, node: Basic, operation: Callable, children: Sequence[Basic]) -> None:
        args = tuple(self.slot[c] for c in children)
        self.steps.append((self._new_slot(node), operation, node, args))


LEAF_TYPES = (MatrixSymbol, Identity, OneMatrix, ZeroMatrix, Number, NumberSymbol, BooleanAtom, Symbol)


def _input_value(by_name: dict, name: str, shape: tuple | None) -> Value:
    if name not in by_name:
        what = "matrix" if shape is not None else "scalar symbol"
        raise InvalidArgument(f"no value for the {what} {name}")
    value = np.asarray(by_name[name], dtype=float)
    if shape is None:
        return float(value)
    if value.shape != shape:
        raise ShapeError(f"the value of {name} has shape {value.shape}, but {name} is {shape[0]} x {shape[1]}")
    return value


def _handler(node: Basic) -> Callable | None:
    for cls in type(node).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    if isinstance(node, Function):
        return _evalf_entrywise
    return None


# --- one NumPy operation per node type -------------------------------------------------------------

def _matmul(node, *values):
    coefficient, product = 1.0, None
    for value in values:
        if np.ndim(value) == 2:
            product = value if product is None else product @ value
        else:
            coefficient = coefficient * value
    return coefficient * product


def _sum(node, *values):
    return reduce(lambda a, b: a + b, values)


def _product(node, *values):
    return reduce(lambda a, b: a * b, values)


def _broadcast(node, argument, constant):
    return np.zeros(np.shape(argument)) + constant


def _explicit(node, *entries):
    return np.array([float(e) for e in entries]).reshape(node.shape)


def _blocks(node, *values):
    rows, cols = node.blocks.shape
    return np.block([[values[r * cols + c] for c in range(cols)] for r in range(rows)])


def _grid(node, *values):
    columns = node.columns
    return np.block([list(values[k:k + columns]) for k in range(0, len(values), columns)])


def _inverse(node, a, *power):  # Inverse(A) is MatPow(A, -1): its args are (A, -1)
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:  # singular: no value, as for log of a negative number
        return np.full(a.shape, np.nan)


def _matrix_power(node, a, power):
    if float(power).is_integer():
        try:
            return np.linalg.matrix_power(a, int(power))
        except np.linalg.LinAlgError:
            return np.full(a.shape, np.nan)
    from scipy.linalg import fractional_matrix_power
    result = fractional_matrix_power(a, float(power))
    return result.real if np.all(np.abs(result.imag) <= 1e-12 * (1 + np.abs(result.real))) else np.full(a.shape, np.nan)


def _entry(node, matrix):
    return matrix[int(node.args[1]), int(node.args[2])]


def _log_softmax_values(z, axis: int):
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(node, z):
    shifted = np.exp(z - np.max(z, axis=node.axis, keepdims=True))
    return shifted / np.sum(shifted, axis=node.axis, keepdims=True)


def _squared_error(node, prediction, target, scale):
    return scale * float(np.sum((prediction - target) ** 2))


def _binary_cross_entropy(node, p, y, scale):
    return -scale * float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _of_logits(node: Basic) -> bool:
    """A binary cross-entropy of a sigmoid: evaluated from the logits. From the probabilities, a
    saturated sigmoid rounds 1 - p to a few multiples of 1e-16 (or to 0), and the loss's differences
    lose the example's gradient (p - y) while the closed form keeps it."""
    return isinstance(node, BinaryCrossEntropy) and isinstance(node.prediction, sigmoid)


def _binary_cross_entropy_of_logits(node, z, y, scale):
    # -log p = softplus(-z) and -log(1 - p) = softplus(z), for p = sigmoid(z)
    return scale * float(np.sum(y * SCALAR_FUNCTIONS[Softplus](-z) + (1 - y) * SCALAR_FUNCTIONS[Softplus](z)))


def _softmax_cross_entropy(node, logits, target, scale):
    return -scale * float(np.sum(target * _log_softmax_values(logits, node.axis)))


def _piecewise(node, *pairs):
    result = np.nan
    for value, condition in reversed(pairs):
        result = np.where(condition, value, result)
    return result if np.ndim(result) else float(result)


def _evalf_entrywise(node, *values):
    """Any other scalar function: SymPy's own numeric evaluation, entry by entry."""
    def at(*numbers):
        return float(node.func(*(Float(float(n)) for n in numbers)).evalf())
    result = np.vectorize(at, otypes=[float])(*values)
    return result if np.ndim(result) else float(result)


def _scalar(function: Callable) -> Callable:
    return lambda node, *values: function(*values)


def _normal_cdf(x):
    return 0.5 * (1.0 + special.erf(x / math.sqrt(2.0)))


# The activations from their textbook definitions (relu'(0) = 0, as derive's Step says).
SCALAR_FUNCTIONS = {
    Relu: lambda x: np.where(x > 0, x, 0.0),
    Step: lambda x: np.where(x > 0, 1.0, 0.0),
    LeakyRelu: lambda x, alpha: np.where(x > 0, x, alpha * x),
    Elu: lambda x, alpha: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0)),
    Sigmoid: special.expit,
    NormalCdf: _normal_cdf,
    Gelu: lambda x: x * _normal_cdf(x),
    Silu: lambda x: x * special.expit(x),
    Softplus: lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),   # log(1 + e^x), without overflow
    exp: np.exp, log: np.log, sin: np.sin, cos: np.cos, tan: np.tan, tanh: np.tanh, sinh: np.sinh,
    cosh: np.cosh, asin: np.arcsin, acos: np.arccos, atan: np.arctan, Abs: np.abs, sign: np.sign,
    erf: special.erf, erfc: special.erfc, conjugate: lambda x: x,
    Heaviside: lambda x, at_zero=0.5: np.heaviside(x, at_zero),
    Min: lambda *xs: reduce(np.minimum, xs), Max: lambda *xs: reduce(np.maximum, xs),
}

HANDLERS: dict[type, Callable] = {
    MatMul: _matmul,
    MatAdd: _sum,
    HadamardProduct: _product,
    HadamardPower: lambda node, base, power: np.power(base, power),
    Transpose: lambda node, a: a.T,
    ConjugateTranspose: lambda node, a: a.T,   # real values throughout
    Inverse: _inverse,
    Determinant: lambda node, a: float(np.linalg.det(a)),
    Trace: lambda node, a: float(np.trace(a)),
    MatPow: _matrix_power,
    MatrixElement: _entry,
    KroneckerProduct: lambda node, *values: reduce(np.kron, values),
    softmax: _softmax,
    log_softmax: lambda node, z: _log_softmax_values(z, node.axis),
    SquaredError: _squared_error,
    BinaryCrossEntropy: _binary_cross_entropy,
    SoftmaxCrossEntropy: _softmax_cross_entropy,
    Add: _sum,
    Mul: _product,
    Pow: lambda node, base, power: np.power(np.float64(base) if np.ndim(base) == 0 else base, power),
    Piecewise: _piecewise,
    ExprCondPair: lambda node, value, condition: (value, condition),
    **{cls: _scalar(f) for cls, f in SCALAR_FUNCTIONS.items()},
}
for _relation, _compare in (("<", np.less), ("<=", np.less_equal), (">", np.greater), (">=", np.greater_equal),
                            ("==", np.equal), ("!=", np.not_equal)):
    HANDLERS[Relational.ValidRelationOperator[_relation]] = _scalar(_compare)


# =================================================================================================
# The domain: where each matrix of a loss may be drawn
# =================================================================================================

NORMAL = "normal"
POSITIVE = "positive"
PROBABILITY = "probability"
NONNEGATIVE = "nonnegative"
SIMPLEX = "simplex"
INVERTIBLE = "invertible"
INVERTIBLE_POSITIVE = "invertible positive"
INTEGER = "integer"


@dataclass(frozen=True)
class Draw:
    """How to draw valid random values for one matrix (or scalar symbol) of a loss.

    ``kind`` is one of: ``normal`` (standard normal entries), ``positive`` (in (0.5, 1.5): the
    argument of a log or a root), ``probability`` (in (0.05, 0.95)), ``nonnegative`` (in [0, 1)),
    ``simplex`` (each example's entries positive and summing to 1 along ``axis``: 1 sums each row),
    ``invertible`` (I + E with |E_ij| < 1/(2n): determinant positive, condition number under 3),
    ``invertible positive`` (the same with 0 < E_ij) and ``integer`` (a scalar in 2..4).
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
        else:
            values = rng.uniform(low, high, size=shape)
        return float(values) if shape == () else values


# What a consumer asks of its arguments (tags), and which operations pass a request on to theirs.
_POSITIVE, _INVERTIBLE, _PROBABILITY, _NONNEGATIVE = "positive", "invertible", "probability", "nonnegative"
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
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, ready = stack.pop()
        if ready:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        if isinstance(node, MatrixSymbol) or not isinstance(node, Basic):
            continue
        children = tuple(node) if isinstance(node, MatrixBase) else (
            tuple(node.blocks) if isinstance(node, BlockMatrix) else node.args)
        stack.extend((c, False) for c in reversed(children) if isinstance(c, Basic) and c not in seen)
    return order


def _requests(node: Basic, tags: set):
    """(argument, tags) pairs: what ``node`` needs of its arguments, and what it passes on of ``tags``."""
    args = node.args
    if isinstance(node, _SQUARE_OPS):
        yield args[0], {_INVERTIBLE}
        return
    if isinstance(node, log) or (isinstance(node, Elementwise) and getattr(type(node), "scalar", None) is log):
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
    return Draw(NORMAL)


def _scalar_draw(symbol: Symbol, tags: set) -> Draw:
    if symbol.is_integer:
        return Draw(INTEGER, reason="an integer symbol")
    if _POSITIVE in tags or symbol.is_nonnegative:
        return Draw(POSITIVE, reason="a positive symbol")
    return Draw(NORMAL)


def sample(draws: Mapping[Basic, Draw], dims: Mapping, rng: np.random.Generator) -> dict[str, Value]:
    """Random values for every symbol in ``draws`` (from :func:`domain`), keyed by name."""
    sizes = Program([], dims)
    return {str(symbol.name): draw.sample(rng, sizes.shape(symbol) if isinstance(symbol, MatrixExpr) else ())
            for symbol, draw in draws.items()}


def canonical_dims(*exprs: Basic, first: int = 2) -> dict[Symbol, int]:
    """Small distinct sizes (2, 3, 4 ... by name) for the dimension symbols of ``exprs``, so that a
    transposed product cannot fit where the right one does; every matrix at least 1 x 1."""
    shapes = [d for expr in exprs for node in _dag(expr) if isinstance(node, MatrixExpr) and isinstance(node, LEAF_TYPES)
              for d in node.shape]
    symbols = sorted({s for d in shapes for s in sympify(d).free_symbols}, key=lambda s: s.name)
    for offset in range(first, first + 8):
        dims = {s: offset + k for k, s in enumerate(symbols)}
        if all(int(sympify(d).xreplace(dims)) >= 1 for d in shapes):
            return dims
    raise DimsError(f"no small sizes for {', '.join(s.name for s in symbols)} make every matrix of the loss "
                    "at least 1 x 1")


# =================================================================================================
# The built-in check: directional derivatives against central differences
# =================================================================================================

ATTEMPTS = 8          # random points tried before giving up (a loss not finite, a kink, a closed form not finite)
STEP = 1e-5           # the differences' step, relative to the parameters' size
TOLERANCE = 1e-6      # on |differences - closed form| / scale: a wrong factor (2, 1/N, -1) is off by 1/3 or more
SETTLED = 1e-5        # two step sizes, or the bend at h and at h/2, disagreeing by more: a kink, draw again
COVERED = 1e-3        # a parameter whose term is smaller than this share of the sum gets a round of its own
ROUNDING = 16         # the rounding error of differences, in units of eps |L| / h (about 10 times what it is)
MAX_ROUNDS = 12


@dataclass(frozen=True)
class NumericCheck:
    """What the built-in check established: where, and how closely the closed forms agreed."""

    dims: dict
    points: int              # random points drawn (one or two were compared; the others were not usable)
    rounds: int              # joint directions compared
    relative_error: float    # the largest |differences - closed form| / scale over those rounds
    unresolved: tuple        # parameters whose directional derivative lies below what differences resolve


@dataclass(frozen=True)
class _Differences:
    value: float       # Richardson's combination of the central differences at h and h/2
    settle: float      # |D(h) - D(h/2)|: a kink crossed, or rounding
    bend: float        # |A(h/2) - A(h)/2| (A: the second difference): a kink at the point itself
    noise: float       # the rounding error the differences carry


def check_gradients(loss: Basic, params: Sequence[MatrixSymbol], closed: Mapping[MatrixSymbol, Basic],
                    bindings: Sequence[tuple[Basic, Basic]] = (), *, seed: int = 0) -> NumericCheck:
    """Check each closed form ``closed[P]`` against central differences of ``loss`` along random directions.

    The loss is evaluated as declared; the closed forms with their named intermediates and upstream
    gradients (``bindings``) each evaluated once. One joint direction over all parameters is compared
    with the sum of the closed forms' terms <dL/dP, V_P>; parameters whose term is too small to show
    in that sum get rounds of their own, and on a mismatch one direction per parameter names it.
    """
    dims = canonical_dims(loss, *params)
    draws = domain(loss)
    # a parameter the loss does not use (allow_unused) moves too: its differences must come out 0
    draws.update({p: Draw(NORMAL) for p in params if p not in draws})
    try:
        loss_program = Program([loss], dims)
        closed_program = Program([closed[p] for p in params], dims, bindings)
    except UnsupportedOperation as error:
        raise UnsupportedOperation(f"{error}; the numeric check of the gradients needs it (pass check=False to "
                                   "skip the check)") from error
    rng = np.random.default_rng(seed)
    finite_loss = closed_not_finite = compared = 0
    pending, rounds, worst = set(params), 0, 0.0
    for attempt in range(1, ATTEMPTS + 1):
        values = sample(draws, dims, rng)
        base = _scalar_loss(loss_program.run(values)[0])
        if not math.isfinite(base):
            continue
        finite_loss += 1
        grads = _closed_values(closed_program.run(values), params, loss_program)
        if not all(np.all(np.isfinite(g)) for g in grads.values()):
            closed_not_finite += 1
            continue
        directions = {p: rng.standard_normal(g.shape) for p, g in grads.items()}
        outcome = _compare(loss_program, values, grads, directions, base, dims)
        if outcome is None:
            continue
        compared += 1
        point_rounds, error, unresolved = outcome
        rounds, worst = rounds + point_rounds, max(worst, error)
        pending &= set(unresolved)
        # A gradient exactly zero here (every ReLU of a layer off) says little: look at one more point
        # for it. One merely too small to difference stays unresolved: another point would not help.
        if compared == 2 or all(np.any(grads[p]) for p in pending):
            return NumericCheck(dims, attempt, rounds, worst, tuple(p.name for p in params if p in pending))
    if compared:
        return NumericCheck(dims, ATTEMPTS, rounds, worst, tuple(p.name for p in params if p in pending))
    shown = _dims_text(dims)
    if finite_loss == 0:
        raise DeriveError(f"the loss {loss} is not finite at any of {ATTEMPTS} random points of its domain "
                          f"({shown}), so its gradients cannot be checked numerically; pass check=False to skip "
                          "the check")
    if closed_not_finite == finite_loss:
        raise GradientMismatch(f"the closed-form gradients are not finite at any of the {finite_loss} random points "
                               f"({shown}) where the loss is finite: derive produced a wrong gradient, please "
                               "report this")
    raise DeriveError(f"the central differences of the loss {loss} did not settle at any of {ATTEMPTS} random points "
                      f"({shown}): a kink at every point, or a loss too steep to difference; pass check=False "
                      "to skip the numeric check")


def _scalar_loss(value: Value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0]) if np.size(value) == 1 else math.nan


def _closed_values(values: list, params: Sequence[MatrixSymbol], program: Program) -> dict:
    grads = {}
    for param, value in zip(params, values):
        shape = program.shape(param)
        value = np.asarray(value, dtype=float)
        if value.shape != shape:
            if value.ndim:
                raise GradientMismatch(f"the closed form of dL/d{param.name} evaluates to a {value.shape} array, "
                                       f"but {param.name} is {shape[0]} x {shape[1]}")
            value = np.full(shape, float(value))
        grads[param] = value
    return grads


def _compare(program, values, grads, directions, base, dims):
    """Rounds of joint directions at one point: (rounds, worst relative error, unresolved), or None
    where the differences do not settle (a kink) and another point must be drawn."""
    terms = {p: float(np.vdot(grads[p], directions[p])) for p in grads}
    remaining, rounds, worst = list(grads), 0, 0.0
    while remaining and rounds < MAX_ROUNDS:
        rounds += 1
        diff = _differences(program, values, {p: directions[p] for p in remaining}, base)
        if diff is None:
            return None
        predicted = math.fsum(terms[p] for p in remaining)
        scale = max(abs(diff.value), math.fsum(abs(terms[p]) for p in remaining))
        if scale <= diff.noise:
            break   # what is left is below what differences resolve
        if not _settled(diff, scale):
            return None
        error = abs(diff.value - predicted)
        if error > _allowed(diff, scale):
            raise _mismatch(program, values, remaining, directions, terms, base, diff.value, predicted, dims)
        worst = max(worst, error / scale)
        covered = [p for p in remaining if abs(terms[p]) >= COVERED * scale]
        if not covered:
            break
        remaining = [p for p in remaining if p not in covered]
    return rounds, worst, remaining


def _settled(diff: _Differences, scale: float) -> bool:
    return bool(diff.settle <= SETTLED * scale + diff.noise and diff.bend <= SETTLED * scale + 4 * diff.noise)


def _allowed(diff: _Differences, scale: float) -> float:
    return TOLERANCE * scale + 4 * diff.settle + diff.noise


def _differences(program: Program, values: dict, directions: dict, base: float) -> _Differences | None:
    """Central differences of the loss along ``directions`` (normalised to RMS 1) at h and h/2."""
    entries = np.concatenate([d.ravel() for d in directions.values()])
    norm = float(np.sqrt(np.mean(entries ** 2))) or 1.0
    size = np.concatenate([np.ravel(values[p.name]) for p in directions])
    h = STEP * max(1.0, float(np.sqrt(np.mean(size ** 2))))
    at = {}
    for t in (h, -h, h / 2, -h / 2):
        moved = dict(values)
        for p, d in directions.items():
            moved[p.name] = values[p.name] + (t / norm) * d
        at[t] = _scalar_loss(program.run(moved)[0])
    if not all(math.isfinite(v) for v in at.values()):
        return None
    wide, narrow = (at[h] - at[-h]) / (2 * h), (at[h / 2] - at[-h / 2]) / h
    bend_wide = (at[h] - 2 * base + at[-h]) / h
    bend_narrow = (at[h / 2] - 2 * base + at[-h / 2]) / (h / 2)
    magnitude = max(abs(base), *(abs(v) for v in at.values()))
    return _Differences(value=(4 * narrow - wide) / 3 * norm, settle=abs(wide - narrow) * norm,
                        bend=abs(bend_narrow - bend_wide / 2) * norm,
                        noise=ROUNDING * np.finfo(float).eps * magnitude / h * norm)


def _mismatch(program, values, remaining, directions, terms, base, differences, predicted, dims) -> GradientMismatch:
    """The error for a failed round, naming the parameter that fails on its own direction."""
    where = f"at a random point of the loss's domain ({_dims_text(dims)})"
    worst = None
    for p in remaining:
        diff = _differences(program, values, {p: directions[p]}, base)
        if diff is None:
            continue
        scale = max(abs(diff.value), abs(terms[p]))
        error = abs(diff.value - terms[p])
        if error > _allowed(diff, scale) and (worst is None or error / scale > worst[0]):
            worst = (error / scale, p, diff.value)
    if worst is not None:
        error, p, numeric = worst
        return GradientMismatch(
            f"dL/d{p.name} is wrong: along a random direction V {where}, the closed form gives <dL/d{p.name}, V> = "
            f"{terms[p]!r} but central differences of the loss give {numeric!r} (relative error {error:.2e}); "
            "derive produced a wrong gradient, please report this")
    names = ", ".join(p.name for p in remaining)
    return GradientMismatch(
        f"the gradients of {names} are wrong together: along a random direction {where}, the closed forms give "
        f"{predicted!r} but central differences of the loss give {differences!r}; derive produced a wrong "
        "gradient, please report this")


def _dims_text(dims: Mapping) -> str:
    return "dims " + ", ".join(f"{k}={v}" for k, v in dims.items()) if dims else "no dims"
