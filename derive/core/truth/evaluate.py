"""The independent numeric truth: SymPy matrix expressions evaluated in float64 NumPy.

:func:`evaluate` (and :class:`Program`, which compiles expressions once and runs them at many
points) walks the DAG, each shared node once, with one NumPy operation per SymPy node type. An
activation's scalar function is evaluated by its record's reference formula (the textbook
definition: GELU is x (1 + erf(x/√2))/2), never by the NumPy printer's forms; a matrix function
applied entry by entry through its scalar SymPy definition (``relu(A)`` as ``Relu(a)``, ``relu'(A)``
as the derivative SymPy took of it), and any other matrix expression of concrete shape through
SymPy's own ``as_explicit``.

Nothing here reads derive's rule table or its renderers: a check built from them would share their
mistakes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import reduce

import numpy as np
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
from sympy.core.numbers import NumberSymbol
from sympy.core.relational import Relational
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanAtom
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.adjoint import Adjoint as ConjugateTranspose
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from ...errors import (
    DimsError,
    InvalidArgument,
    ShapeError,
    UnsupportedOperation,
)
from ..activations import Indicator, NormalCdf, sigmoid
from ..canonical import Blocks, Entries
from ..dims import check_fit, node_requirements
from ..elementwise import Elementwise, scalar_record
from ..lazy import special
from ..losses import BinaryCrossEntropy, SoftmaxCrossEntropy, SquaredError
from ..softmax import log_softmax, softmax

__all__ = ["LEAF_TYPES", "Program", "Value", "evaluate"]

Value = float | np.ndarray


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

    def _check_fit(self, node: Basic) -> None:
        """Dims that make a slice empty or out of range are refused naming it, not met as an IndexError."""
        needs = node_requirements(node, every_matrix=False)
        check_fit(needs, {s: self.sizes[s.name] for n in needs for s in n.amount.free_symbols if s.name in self.sizes})

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
        if not concrete.is_Integer:
            missing = sorted(s.name for s in concrete.free_symbols)
            raise DimsError(f"no concrete size for the dimension {dim}: give dims for {', '.join(missing) or dim}")
        if concrete < 0:
            given = ", ".join(f"{s.name} = {self.sizes[s.name]}" for s in sorted(dim.free_symbols, key=str)
                              if s.name in self.sizes)
            raise DimsError(f"the dimension {dim} comes out as {concrete} (negative) with {given or 'no dims'}: "
                            "give sizes that make every dimension at least 0")
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
        if isinstance(node, (MatrixSlice, MatrixElement)):
            self._check_fit(node)
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
        except Exception as error:  # whatever SymPy raises, say which node it was and why
            raise UnsupportedOperation(f"the numeric evaluator (derive.truth) cannot evaluate "
                                       f"{type(node).__name__} ({node}) at {self._sizes_text()}: "
                                       f"{_reason(error)}") from error
        if expanded == rebuilt and not isinstance(expanded, MatrixBase):
            raise UnsupportedOperation(f"the numeric evaluator (derive.truth) cannot evaluate {type(node).__name__} "
                                       f"({node}): SymPy does not write it out at concrete dims")
        return expanded

    def _sizes_text(self) -> str:
        return "dims " + ", ".join(f"{k}={v}" for k, v in sorted(self.sizes.items())) if self.sizes else "no dims"

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


def _reason(error: Exception) -> str:
    """What SymPy said; some of its errors (an IndexError from a slice past the end) say nothing."""
    said = str(error).strip()
    return f"SymPy raised {type(error).__name__}: {said}" if said else (
        f"SymPy raised {type(error).__name__} without a message writing it out (an index or size out of range?)")


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
    record = scalar_record(type(node))
    if record is not None and record.reference is not None:
        return _scalar(record.reference)
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


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))   # log(1 + e^x), without overflow


def _binary_cross_entropy_of_logits(node, z, y, scale):
    # -log p = softplus(-z) and -log(1 - p) = softplus(z), for p = sigmoid(z)
    return scale * float(np.sum(y * _softplus(-z) + (1 - y) * _softplus(z)))


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


# SymPy's elementary functions, and the two scalar functions of derive that are no activation of their
# own (relu's derivative, GELU's Phi), from their textbook definitions. An activation's scalar
# function is evaluated by its record's reference formula (see _handler).
SCALAR_FUNCTIONS = {
    Indicator: lambda x: np.where(x > 0, 1.0, 0.0),
    NormalCdf: _normal_cdf,
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
