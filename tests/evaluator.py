"""A test-only evaluator of SymPy matrix expressions, with NumPy or with torch: the independent truth.

``evaluate(expr, values, dims, backend)`` walks the expression DAG (each shared node once) and applies
one NumPy or torch operation per node type. It never calls derive's rules, printers or explicit
expansion, so the loss it evaluates gives finite differences (NumPy) and autograd gradients (torch)
that owe nothing to the deriver; evaluated on a closed form ``g[W]`` it gives that form's numbers.
SymPy's own spellings are evaluated as SymPy defines them (a ``BlockMatrix`` from its blocks, an
explicit ``Matrix`` from its entries, an index ``Sum`` term by term), never through derive.canonical;
derive's ``Blocks``, ``Entries`` and slices are evaluated only where a closed form holds them.

Activations in the torch backend are PyTorch's own (``F.gelu``, ``F.softplus``, ``F.log_softmax``,
``F.binary_cross_entropy``, ``F.binary_cross_entropy_with_logits`` for a BCE of a sigmoid): the
stable implementations a user would compare against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy import special
from sympy import (
    Add,
    Atom,
    Basic,
    BlockMatrix,
    Determinant,
    Dummy,
    Function,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixSymbol,
    Mul,
    Number,
    OneMatrix,
    Pow,
    Sum,
    Symbol,
    Trace,
    Transpose,
    ZeroMatrix,
    cos,
    exp,
    lambdify,
    log,
    sin,
    tanh,
)
from sympy.logic.boolalg import BooleanAtom
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from derive.core.activations import elu, gelu, leaky_relu, relu, sigmoid, silu, softplus
from derive.core.activations import exp as exp_
from derive.core.activations import log as log_
from derive.core.activations import tanh as tanh_
from derive.core.canonical import Blocks, Entries
from derive.core.elementwise import Elementwise
from derive.core.losses import BinaryCrossEntropy, SoftmaxCrossEntropy, SquaredError
from derive.core.softmax import log_softmax, softmax

# Activations with a kink at 0: finite differences across it are meaningless, so the walker records
# how close their arguments come to 0.
KINKED = (relu, leaky_relu, elu)


class NumpyOps:
    """NumPy implementations, written from the textbook definitions."""

    name = "numpy"
    activations: ClassVar[dict] = {
        relu: lambda a: np.maximum(a, 0.0),
        leaky_relu: lambda a, alpha: np.where(a > 0, a, alpha * a),
        elu: lambda a, alpha: np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0.0))),
        sigmoid: special.expit,
        tanh_: np.tanh,
        gelu: lambda a: a * 0.5 * (1.0 + special.erf(a / math.sqrt(2.0))),
        silu: lambda a: a * special.expit(a),
        softplus: lambda a: np.logaddexp(0.0, a),
        exp_: np.exp,
        log_: np.log,
    }

    @staticmethod
    def constant(value: float):
        return float(value)

    @staticmethod
    def full(rows: int, cols: int, value: float):
        return np.full((rows, cols), value)

    @staticmethod
    def eye(n: int):
        return np.eye(n)

    @staticmethod
    def matmul(a, b):
        return a @ b

    @staticmethod
    def transpose(a):
        return a.T

    @staticmethod
    def inverse(a):
        return np.linalg.inv(a)

    @staticmethod
    def det(a):
        return np.linalg.det(a)

    @staticmethod
    def trace(a):
        return np.trace(a)

    @staticmethod
    def total(a):
        return np.sum(a)

    @staticmethod
    def log(a):
        return np.log(a)

    @staticmethod
    def exp(a):
        return np.exp(a)

    @staticmethod
    def log_softmax(a, axis: int):
        shifted = a - np.max(a, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))

    @staticmethod
    def bce(p, y):
        return -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))

    @staticmethod
    def bce_logits(z, y):
        return np.sum(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z))

    @staticmethod
    def matrix_power(a, k: int):
        return np.linalg.matrix_power(a, k)

    @staticmethod
    def block(grid):
        return np.block([[np.asarray(b, dtype=float) for b in row] for row in grid])

    @staticmethod
    def stack(rows):
        return np.array([[float(e) for e in row] for row in rows])

    @staticmethod
    def scalar_function(name: str, a):
        return getattr(np, name)(a)


class TorchOps:
    """torch implementations: PyTorch's own functions, so autograd gives its gradients."""

    name = "torch"

    def __init__(self):
        import torch
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        self.activations = {
            relu: torch.relu,
            leaky_relu: lambda a, alpha: F.leaky_relu(a, float(alpha)),
            elu: lambda a, alpha: F.elu(a, float(alpha)),
            sigmoid: torch.sigmoid,
            tanh_: torch.tanh,
            gelu: F.gelu,
            silu: F.silu,
            softplus: F.softplus,
            exp_: torch.exp,
            log_: torch.log,
        }
        self.dtype = torch.float64

    def constant(self, value: float):
        return self.torch.tensor(float(value), dtype=self.dtype)

    def full(self, rows, cols, value):
        return self.torch.full((rows, cols), float(value), dtype=self.dtype)

    def eye(self, n):
        return self.torch.eye(n, dtype=self.dtype)

    def matmul(self, a, b):
        return a @ b

    def transpose(self, a):
        return a.T

    def inverse(self, a):
        return self.torch.linalg.inv(a)

    def det(self, a):
        return self.torch.linalg.det(a)

    def trace(self, a):
        return self.torch.trace(a)

    def total(self, a):
        return a.sum()

    def log(self, a):
        return self.torch.log(a)

    def exp(self, a):
        return self.torch.exp(a)

    def log_softmax(self, a, axis):
        return self.F.log_softmax(a, dim=axis)

    def bce(self, p, y):
        return self.F.binary_cross_entropy(p, y, reduction="sum")

    def bce_logits(self, z, y):
        return self.F.binary_cross_entropy_with_logits(z, y, reduction="sum")

    def matrix_power(self, a, k):
        return self.torch.linalg.matrix_power(a, k)

    def block(self, grid):
        return self.torch.cat([self.torch.cat(list(row), dim=1) for row in grid], dim=0)

    def stack(self, rows):
        as_tensor = (lambda e: e if self.torch.is_tensor(e) else self.constant(e))
        return self.torch.stack([self.torch.stack([as_tensor(e).reshape(()) for e in row]) for row in rows])

    def scalar_function(self, name: str, a):
        return getattr(self.torch, name)(a)


class JaxOps:
    """jax.numpy implementations from the textbook definitions (as NumpyOps), so that jax.grad and
    jax.jvp of a loss evaluated with them owe nothing to derive's printers."""

    name = "jax"

    def __init__(self):
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        self.activations = {
            relu: lambda a: jnp.maximum(a, 0.0),
            leaky_relu: lambda a, alpha: jnp.where(a > 0, a, float(alpha) * a),
            elu: lambda a, alpha: jnp.where(a > 0, a, float(alpha) * jnp.expm1(jnp.minimum(a, 0.0))),
            sigmoid: jax.nn.sigmoid,
            tanh_: jnp.tanh,
            gelu: lambda a: a * 0.5 * (1.0 + jax.scipy.special.erf(a / math.sqrt(2.0))),
            silu: lambda a: a * jax.nn.sigmoid(a),
            softplus: lambda a: jnp.logaddexp(0.0, a),
            exp_: jnp.exp,
            log_: jnp.log,
        }

    def constant(self, value):
        return float(value)

    def full(self, rows, cols, value):
        return self.jnp.full((rows, cols), float(value))

    def eye(self, n):
        return self.jnp.eye(n)

    def matmul(self, a, b):
        return a @ b

    def transpose(self, a):
        return a.T

    def inverse(self, a):
        return self.jnp.linalg.inv(a)

    def det(self, a):
        return self.jnp.linalg.det(a)

    def trace(self, a):
        return self.jnp.trace(a)

    def total(self, a):
        return self.jnp.sum(a)

    def log(self, a):
        return self.jnp.log(a)

    def exp(self, a):
        return self.jnp.exp(a)

    def log_softmax(self, a, axis):
        return self.jax.nn.log_softmax(a, axis=axis)

    def bce(self, p, y):
        return -self.jnp.sum(y * self.jnp.log(p) + (1 - y) * self.jnp.log1p(-p))

    def bce_logits(self, z, y):
        return self.jnp.sum(y * self.jnp.logaddexp(0.0, -z) + (1 - y) * self.jnp.logaddexp(0.0, z))

    def matrix_power(self, a, k):
        return self.jnp.linalg.matrix_power(a, k)

    def block(self, grid):
        return self.jnp.block([[self.jnp.asarray(b) for b in row] for row in grid])

    def stack(self, rows):
        return self.jnp.stack([self.jnp.stack([self.jnp.asarray(e).reshape(()) for e in row]) for row in rows])

    def scalar_function(self, name: str, a):
        return getattr(self.jnp, name)(a)


@dataclass
class Walk:
    """One evaluation: the values of the leaves, the sizes of the dims, what was seen on the way."""

    ops: object
    values: dict            # MatrixSymbol name -> array or tensor
    dims: dict              # dimension Symbol -> int
    kink_margin: float = math.inf   # smallest |argument| of a kinked activation
    memo: dict = field(default_factory=dict)
    # a BCE of a sigmoid from its logits (see _of_logits); from the probabilities where a gradient
    # with respect to the probabilities themselves is wanted (tests/hand_truth.py's dL/dp)
    logits: bool = True

    def size(self, d) -> int:
        return int(d.xreplace(self.dims)) if isinstance(d, Basic) else int(d)

    def run(self, expr: Basic):
        for node in _order(expr, self.memo, self.logits):
            if node not in self.memo:
                self.memo[node] = self.node(node, [self.memo.get(a) for a in _children(node, self.logits)])
        return self.memo[expr]

    def node(self, node: Basic, args: list):
        ops = self.ops
        if isinstance(node, MatrixSymbol):
            return self.values[node.name]
        if isinstance(node, (Identity, OneMatrix, ZeroMatrix)):
            rows, cols = (self.size(d) for d in node.shape)
            return ops.eye(rows) if isinstance(node, Identity) else ops.full(rows, cols, float(isinstance(node, OneMatrix)))
        if isinstance(node, BooleanAtom):
            return bool(node)
        if isinstance(node, MatrixBase):
            return ops.stack(node.tolist()) if not args else ops.stack(_rows(args, node.cols))
        if isinstance(node, Sum):
            return self.expanded_sum(node)
        if isinstance(node, Number):
            return ops.constant(node)
        if isinstance(node, Symbol):
            return ops.constant(self.dims[node])
        handler = HANDLERS.get(type(node))
        if handler is None:
            handler = next((h for cls, h in HANDLERS.items() if isinstance(node, cls)), None)
        if handler is None:
            raise TypeError(f"the test evaluator has no {ops.name} operation for {type(node).__name__}")
        return handler(self, node, args)


    def expanded_sum(self, node: Sum):
        """An index sum, term by term: its body evaluated at every value of its indices."""
        assignments = [{}]
        for index, low, high in node.limits:
            assignments = [{**a, index: Integer(k)} for a in assignments
                           for k in range(self.size(low), self.size(high) + 1)]
        total = self.ops.constant(0)
        for assignment in assignments:
            total = total + self.run(node.function.xreplace(assignment))
        return total


def _children(node: Basic, logits: bool = True) -> list:
    """What a node's value is computed from: SymPy keeps a BlockMatrix's blocks and an explicit matrix's
    entries inside an explicit matrix, and an index Sum is expanded term by term when it is met."""
    if isinstance(node, BlockMatrix):
        return list(node.blocks)
    if isinstance(node, MatrixBase):
        return list(node) if any(e.free_symbols for e in node) else []
    if isinstance(node, (Sum, MatrixSymbol, Identity, OneMatrix, ZeroMatrix, Atom)):
        return []
    if isinstance(node, MatrixSlice):
        return [node.parent]  # the bounds are read off the node
    if logits and _of_logits(node):
        return [node.args[0].args[0], *node.args[1:]]
    return list(node.args)


def _of_logits(node: Basic) -> bool:
    """A binary cross-entropy of a sigmoid, evaluated from the logits as PyTorch's
    ``binary_cross_entropy_with_logits`` does: from the probabilities, a saturated sigmoid rounds
    1 - p (and torch clamps the gradient of ``binary_cross_entropy`` where p (1 - p) < 1e-12)."""
    return isinstance(node, BinaryCrossEntropy) and isinstance(node.args[0], sigmoid)


def _order(root: Basic, done: dict, logits: bool = True) -> list:
    """Every node below ``root`` once, after its children (iterative post-order)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen and node not in done:
            seen.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node, logits)))
    return order


def _rows(values: list, columns: int) -> list:
    return [values[k:k + columns] for k in range(0, len(values), columns)]


def _matmul(walk, node, args):
    coeff, product = None, None
    for arg, value in zip(node.args, args):
        if getattr(arg, "is_Matrix", False):
            product = value if product is None else walk.ops.matmul(product, value)
        else:
            coeff = value if coeff is None else coeff * value
    return product if coeff is None else coeff * product


def _sum(walk, node, args):
    total = args[0]
    for value in args[1:]:
        total = total + value
    return total


def _product(walk, node, args):
    total = args[0]
    for value in args[1:]:
        total = total * value
    return total


def _elementwise(walk, node, args):
    cls = type(node)
    params = [float(p) for p in node.params]
    if cls in KINKED and walk.ops.name == "numpy":
        walk.kink_margin = min(walk.kink_margin, float(np.min(np.abs(args[0]))))
    if cls in walk.ops.activations:
        return walk.ops.activations[cls](args[0], *params)
    if getattr(cls, "of", None) is not None and walk.ops.name == "numpy":
        return _derivative_function(cls, tuple(params))(args[0])
    raise TypeError(f"the test evaluator has no {walk.ops.name} operation for {cls.__name__}")


_DERIVATIVES: dict = {}


def _derivative_function(cls, params):
    """A prime class's scalar derivative (``relu_prime``: Step), lambdified once per class."""
    key = (cls, params)
    if key not in _DERIVATIVES:
        x = Dummy("x")
        _DERIVATIVES[key] = lambdify(x, cls.scalar(x, *params), modules=["numpy", "scipy"])
    return _DERIVATIVES[key]


SCALAR_FUNCTIONS = {log: "log", exp: "exp", sin: "sin", cos: "cos", tanh: "tanh"}


def _scalar_function(walk, node, args):
    name = SCALAR_FUNCTIONS.get(type(node))
    if name is not None:
        return walk.ops.scalar_function(name, args[0])
    raise TypeError(f"the test evaluator has no {walk.ops.name} operation for {type(node).__name__}")


def _log_softmax(walk, node, args):
    return walk.ops.log_softmax(args[0], node.axis)


def _softmax(walk, node, args):
    return walk.ops.exp(walk.ops.log_softmax(args[0], node.axis))


def _squared_error(walk, node, args):
    p, y, scale = args
    return scale * walk.ops.total((p - y) * (p - y))


def _bce(walk, node, args):
    p, y, scale = args
    return scale * (walk.ops.bce_logits(p, y) if walk.logits and _of_logits(node) else walk.ops.bce(p, y))


def _cross_entropy(walk, node, args):
    z, y, scale = args[:3]
    return -scale * walk.ops.total(y * walk.ops.log_softmax(z, int(node.args[3])))


def _slice(walk, node, args):
    (r0, r1, _), (c0, c1, _) = node.args[1], node.args[2]
    return args[0][walk.size(r0):walk.size(r1), walk.size(c0):walk.size(c1)]


HANDLERS = {
    BlockMatrix: lambda walk, node, args: walk.ops.block(_rows(args, node.blocks.cols)),
    Blocks: lambda walk, node, args: walk.ops.block(_rows(args[1:], node.columns)),
    Entries: lambda walk, node, args: walk.ops.stack(_rows(args[1:], node.columns)),
    MatrixSlice: _slice,
    MatMul: _matmul,
    MatAdd: _sum,
    Add: _sum,
    Mul: _product,
    HadamardProduct: _product,
    Transpose: lambda walk, node, args: walk.ops.transpose(args[0]),
    HadamardPower: lambda walk, node, args: args[0] ** args[1],
    Pow: lambda walk, node, args: args[0] ** args[1],
    MatPow: lambda walk, node, args: walk.ops.matrix_power(args[0], int(node.args[1])),
    Inverse: lambda walk, node, args: walk.ops.inverse(args[0]),
    Determinant: lambda walk, node, args: walk.ops.det(args[0]),
    Trace: lambda walk, node, args: walk.ops.trace(args[0]),
    MatrixElement: lambda walk, node, args: args[0][int(node.args[1]), int(node.args[2])],
    Integer: lambda walk, node, args: walk.ops.constant(node),
    SquaredError: _squared_error,
    BinaryCrossEntropy: _bce,
    SoftmaxCrossEntropy: _cross_entropy,
    softmax: _softmax,
    log_softmax: _log_softmax,
    Elementwise: _elementwise,
    Function: _scalar_function,
}


def evaluate(expr: Basic, values: dict, dims: dict, ops=None):
    """The value of ``expr`` (matrix or scalar) with ``values`` by name and ``dims`` by Symbol."""
    return Walk(ops or NumpyOps(), values, dims).run(expr)


def numpy_walk(expr: Basic, values: dict, dims: dict) -> Walk:
    """Evaluate with NumPy and keep the walk (its kink margin says whether differences are valid)."""
    walk = Walk(NumpyOps(), values, dims)
    walk.run(expr)
    return walk


def central_differences(loss: Basic, values: dict, dims: dict, name: str, step: float = 1e-6) -> np.ndarray:
    """dL/d(name) by central differences of the NumPy-evaluated loss, entry by entry.

    Each shifted evaluation starts from the base point's values of the nodes that do not depend on
    ``name`` and recomputes the others, with the same operations: the numbers of a fresh evaluation,
    without walking the whole DAG again for every entry.
    """
    base = values[name]
    unmoved = _unmoved(numpy_walk(loss, values, dims).memo, name)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        shifted = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[index] += sign * step
            walk = Walk(NumpyOps(), {**values, name: moved}, dims, memo=dict(unmoved))
            shifted.append(float(walk.run(loss)))
        grad[index] = (shifted[0] - shifted[1]) / (2 * step)
    return grad


def _unmoved(memo: dict, name: str) -> dict:
    """The values in a walk's ``memo`` of the nodes that do not depend on the matrix ``name``.

    A memo is filled children first (an index Sum's terms before the Sum), so one pass in its order
    sees every child's dependence before its parent's.
    """
    moving: set = set()
    for node in memo:
        if isinstance(node, MatrixSymbol):
            depends = node.name == name
        elif isinstance(node, Sum):   # its terms are evaluated as it is met, not through _children
            depends = any(m.name == name for m in node.atoms(MatrixSymbol))
        else:
            depends = any(child in moving for child in _children(node))
        if depends:
            moving.add(node)
    return {node: value for node, value in memo.items() if node not in moving}


def torch_gradients(loss: Basic, values: dict, dims: dict, names: list[str]) -> tuple[float, dict]:
    """The loss and its gradients by PyTorch autograd, in float64."""
    ops = TorchOps()
    torch = ops.torch
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in names) for k, v in values.items()}
    value = evaluate(loss, leaves, dims, ops)
    grads = torch.autograd.grad(value, [leaves[n] for n in names], allow_unused=True)
    return float(value.detach()), {n: (np.zeros_like(values[n]) if g is None else g.detach().numpy())
                          for n, g in zip(names, grads)}


def torch_loss_and_grads(loss: Basic, params: dict, batch: dict, dims: dict) -> tuple[float, dict]:
    """The loss and d loss / d param for every param, by PyTorch autograd in float64 (a 1 x 1 loss read
    as a scalar)."""
    ops = TorchOps()
    torch = ops.torch
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in params) for k, v in {**params, **batch}.items()}
    value = evaluate(loss, leaves, dims, ops).reshape(())
    grads = torch.autograd.grad(value, [leaves[k] for k in params], allow_unused=True)
    return float(value.detach()), {k: (np.zeros_like(params[k]) if g is None else g.detach().numpy())
                                   for k, g in zip(params, grads)}


def torch_hvp(loss: Basic, params: dict, batch: dict, dims: dict, directions: dict) -> dict:
    """The Hessian of the loss in all of ``params`` jointly applied to ``directions`` (name -> array; a
    parameter left out has direction 0), by ``torch.autograd.functional.hvp`` in float64."""
    ops = TorchOps()
    torch = ops.torch
    names = list(params)
    fixed = {k: torch.tensor(v, dtype=torch.float64) for k, v in batch.items()}

    def of_params(*tensors):
        return evaluate(loss, {**fixed, **dict(zip(names, tensors))}, dims, ops).reshape(())

    at = tuple(torch.tensor(params[k], dtype=torch.float64) for k in names)
    along = tuple(torch.tensor(directions[k], dtype=torch.float64) if k in directions else torch.zeros_like(t)
                  for k, t in zip(names, at))
    _, products = torch.autograd.functional.hvp(of_params, at, along)
    return {k: p.numpy() for k, p in zip(names, products)}
