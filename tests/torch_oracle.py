"""An independent truth for generated code: the SymPy loss evaluated with torch ops, then autograd.

``evaluate(expr, env, dims)`` walks the expression tree (the network's own symbols, no derivation
involved) with one torch operation per node type; torch's autograd then gives the gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sympy import (
    Add,
    Determinant,
    HadamardPower,
    HadamardProduct,
    Identity,
    Inverse,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    OneMatrix,
    Pow,
    Trace,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixElement

from derive.core.activations import elu, gelu, leaky_relu, relu, sigmoid, silu, softplus
from derive.core.activations import exp as exp_
from derive.core.activations import log as log_
from derive.core.activations import tanh as tanh_
from derive.core.losses import BinaryCrossEntropy, SoftmaxCrossEntropy, SquaredError
from derive.core.softmax import log_softmax, softmax

ACTIVATIONS = {
    relu: lambda a: torch.relu(a),
    leaky_relu: lambda a, alpha: F.leaky_relu(a, float(alpha)),
    elu: lambda a, alpha: F.elu(a, float(alpha)),
    sigmoid: torch.sigmoid,
    gelu: lambda a: F.gelu(a),
    silu: F.silu,
    softplus: F.softplus,
    tanh_: torch.tanh,
    exp_: torch.exp,
    log_: torch.log,
}


def _size(dim, dims) -> int:
    return int(dim.subs(dims)) if hasattr(dim, "subs") else int(dim)


def evaluate(expr, env: dict, dims: dict):
    """``expr`` as a torch tensor (or a 0-d tensor for scalars); ``env`` maps symbol names to tensors."""
    def ev(e):
        return evaluate(e, env, dims)

    if isinstance(expr, MatrixSymbol):
        return env[expr.name]
    if isinstance(expr, OneMatrix):
        return torch.ones(_size(expr.rows, dims), _size(expr.cols, dims), dtype=torch.float64)
    if isinstance(expr, ZeroMatrix):
        return torch.zeros(_size(expr.rows, dims), _size(expr.cols, dims), dtype=torch.float64)
    if isinstance(expr, Identity):
        return torch.eye(_size(expr.rows, dims), dtype=torch.float64)
    if isinstance(expr, MatMul):
        result = None
        for arg in expr.args:
            value = ev(arg)
            if result is None:
                result = value
            elif isinstance(arg, MatrixExpr) and result.dim() == 2:
                result = result @ value
            else:
                result = result * value
        return result
    if isinstance(expr, (MatAdd, Add)):
        return sum((ev(a) for a in expr.args[1:]), ev(expr.args[0]))
    if isinstance(expr, Mul):
        result = ev(expr.args[0])
        for arg in expr.args[1:]:
            result = result * ev(arg)
        return result
    if isinstance(expr, Pow):
        return ev(expr.base) ** ev(expr.exp)
    if isinstance(expr, Transpose):
        return ev(expr.arg).T
    if isinstance(expr, HadamardProduct):
        result = ev(expr.args[0])
        for arg in expr.args[1:]:
            result = result * ev(arg)
        return result
    if isinstance(expr, HadamardPower):
        return ev(expr.args[0]) ** ev(expr.args[1])
    for cls, fn in ACTIVATIONS.items():
        if type(expr) is cls:
            return fn(ev(expr.arg), *expr.params)
    if isinstance(expr, softmax):
        return torch.softmax(ev(expr.arg), dim=expr.axis)
    if isinstance(expr, log_softmax):
        return torch.log_softmax(ev(expr.arg), dim=expr.axis)
    if isinstance(expr, SquaredError):
        return ev(expr.scale) * ((ev(expr.prediction) - ev(expr.target)) ** 2).sum()
    if isinstance(expr, BinaryCrossEntropy):
        target = ev(expr.target)
        if isinstance(expr.prediction, sigmoid):  # torch's own stable form, on the logits
            return ev(expr.scale) * F.binary_cross_entropy_with_logits(
                ev(expr.prediction.arg), target, reduction="sum")
        return ev(expr.scale) * F.binary_cross_entropy(ev(expr.prediction), target, reduction="sum")
    if isinstance(expr, SoftmaxCrossEntropy):
        log_p = torch.log_softmax(ev(expr.prediction), dim=expr.axis)
        return -ev(expr.scale) * (ev(expr.target) * log_p).sum()
    if isinstance(expr, MatrixElement):
        return ev(expr.args[0])[int(expr.args[1]), int(expr.args[2])]
    if isinstance(expr, Trace):
        return torch.trace(ev(expr.arg))
    if isinstance(expr, Determinant):
        return torch.linalg.det(ev(expr.arg))
    if isinstance(expr, Inverse):
        return torch.linalg.inv(ev(expr.arg))
    if expr.is_number:
        return torch.tensor(float(expr), dtype=torch.float64)
    if expr.free_symbols and not expr.subs(dims).free_symbols:
        return torch.tensor(float(expr.subs(dims)), dtype=torch.float64)
    raise NotImplementedError(f"torch oracle: no evaluation for {type(expr).__name__} ({expr})")


def loss_and_grads(loss, params: dict, batch: dict, dims: dict):
    """The loss and d loss / d param for every param, by torch autograd in float64."""
    env = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in params) for k, v in {**params, **batch}.items()}
    value = evaluate(loss, env, dims)
    if value.dim() == 2:
        value = value[0, 0]
    value.backward()
    return float(value.detach()), {k: env[k].grad.numpy() for k in params}
