"""Hessians the read-off once refused: a constant matrix left of a direction spread over the batch.

A row bias under a softmax or a cross-entropy, ``log det(I + w w^T)``, ``tr((I + w w^T)^-1 X^T X)``, a
parameter used through its entries or its slices. Each Hessian derive reads off its HVP is compared
with two truths that share nothing with it: ``torch.func.hessian`` of the loss evaluated with torch ops
(tests/evaluator.py) and the explicit second derivatives, the loss written out into scalars and
differentiated twice by SymPy (``derive.core.explicit.elementwise_hvp``, differentiated once more in the
direction's entries). What still cannot be read off is refused (tests/core/test_hessian.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import (
    Determinant,
    Identity,
    Inverse,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    log,
    preorder_traversal,
)
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core.explicit import elementwise_hvp

from ..evaluator import TorchOps, evaluate

N, D, K = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "K"))
DIMS = {N: 4, D: 3, K: 2}
X, y, A = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1), MatrixSymbol("A", D, D)
T, TK = MatrixSymbol("T", N, D), MatrixSymbol("TK", N, K)
w, b, r = MatrixSymbol("w", D, 1), MatrixSymbol("b", 1, D), MatrixSymbol("r", 1, D)
I3 = Identity(D)

# (id, loss, the vector parameter)
CASES = [
    ("a row bias under a cross-entropy", derive.cross_entropy(X * A + OneMatrix(N, 1) * b, T), b),
    ("a row bias under a softmax", derive.mse(derive.softmax(X * A + OneMatrix(N, 1) * b), T), b),
    ("log det(I + w w^T)", log(Determinant(I3 + w * w.T)), w),
    ("tr((I + w w^T)^-1 X^T X)", Trace(Inverse(I3 + w * w.T) * X.T * X), w),
    ("w through an entry", derive.mse(X * w * w[0, 0], y), w),
    ("w through its slices", derive.mse(derive.tanh(X[:, :2] * w[:2, :]), y)
     + Trace(w[2:, :].T * w[2:, :] * w[2:, :].T * w[2:, :]), w),
    ("a row through an entry", derive.mse(derive.sigmoid(X * r.T) * r[0, 1], y), r),
    ("a row bias and a column of ones", derive.bce(derive.sigmoid((X + OneMatrix(N, 1) * b) * OneMatrix(D, 1)), y / 2), b),
]


def draw(loss, rng) -> dict:
    shapes = {m.name: tuple(int(s.subs(DIMS)) if hasattr(s, "subs") else int(s) for s in m.shape)
              for m in loss.atoms(MatrixSymbol)}
    values = {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}
    for name in ("T", "TK"):   # a cross-entropy's targets: rows of probabilities
        if name in values:
            values[name] = np.abs(values[name]) / np.abs(values[name]).sum(axis=1, keepdims=True)
    if "y" in values:
        values["y"] = rng.uniform(0.1, 0.9, values["y"].shape)
    return values


def torch_func_hessian(loss, param, values) -> np.ndarray:
    ops = TorchOps()
    torch = ops.torch
    fixed = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items() if k != param.name}
    shape = values[param.name].shape

    def of_param(flat):
        return evaluate(loss, {**fixed, param.name: flat.reshape(shape)}, DIMS, ops).reshape(())

    return torch.func.hessian(of_param)(torch.tensor(values[param.name].ravel(), dtype=torch.float64)).numpy()


def explicit_hessian(loss, param, values) -> np.ndarray:
    """d/dV of SymPy's explicit HVP (linear in V), at ``values``: the Hessian entry by entry."""
    direction = MatrixSymbol("V_explicit", *param.shape)
    hvp = elementwise_hvp(loss, ((param, direction),), param, DIMS)
    entries = list(direction.subs(DIMS).as_explicit())
    hessian = hvp.reshape(len(entries), 1).jacobian(entries)
    numbers = {e: values[e.parent.name][int(e.i), int(e.j)] for e in hessian.atoms(MatrixElement)}
    return np.array(hessian.xreplace(numbers).evalf(), dtype=float)


@pytest.mark.parametrize(("loss", "param"), [row[1:] for row in CASES], ids=[row[0] for row in CASES])
def test_the_hessian_read_off_equals_torch_func_and_the_explicit_second_derivatives(loss, param):
    pytest.importorskip("torch", reason="torch.func.hessian is one of the independent truths")
    hessian = derive.gradients(loss, [param]).hessian(param)   # checked numerically there too
    assert hessian.shape == (D, D)
    values = draw(loss, np.random.default_rng(7))
    got = np.broadcast_to(np.asarray(evaluate(hessian, values, DIMS), dtype=float), (3, 3))
    np.testing.assert_allclose(got, torch_func_hessian(loss, param, values), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, explicit_hessian(loss, param, values), rtol=1e-9, atol=1e-12)


def test_the_row_bias_hessian_is_a_diagonal_of_the_mean_probabilities_less_a_gram_matrix():
    # cross-entropy with targets summing to 1: H = diag(1^T S / N) - S^T S / N, S = softmax(X A + 1 b)
    loss = derive.cross_entropy(X * A + OneMatrix(N, 1) * b, T)
    hessian = derive.gradients(loss, [b]).hessian(b)
    values = draw(loss, np.random.default_rng(2))
    logits = values["X"] @ values["A"] + values["b"]
    s = np.exp(logits - logits.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    hand = np.diag(s.mean(axis=0)) - s.T @ s / DIMS[N]
    np.testing.assert_allclose(np.asarray(evaluate(hessian, values, DIMS), dtype=float), hand, rtol=1e-10, atol=1e-12)
    # the only diagonal is of a D-vector, written as I ⊙ (1 c^T): nothing N x N
    assert not any(getattr(node, "shape", None) == (N, N) for node in preorder_traversal(hessian)), hessian

