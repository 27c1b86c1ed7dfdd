"""Closed-form Hessians (``g.hessian``) and the Matrix Cookbook's second-order identities.

Each Hessian is compared with the Cookbook's (or the textbook's) closed form written by hand and with
``torch.autograd.functional.hessian`` of the loss evaluated with torch ops (tests/evaluator.py); each
HVP identity of a matrix parameter with the Cookbook's formula. Both sides are evaluated numerically by
the test evaluator, which reads no rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import (
    Determinant,
    DiagMatrix,
    HadamardProduct,
    Identity,
    Inverse,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    ZeroMatrix,
    log,
    preorder_traversal,
)

import derive
from derive.core.activations import sigmoid, tanh
from derive.core.losses import bce, mse

from ..evaluator import TorchOps, evaluate

N, D, K = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "K"))
DIMS = {N: 5, D: 3, K: 4}
X, y, M, c = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1), MatrixSymbol("M", K, D), MatrixSymbol("c", K, 1)
A, B = MatrixSymbol("A", D, D), MatrixSymbol("B", D, D)
x, w, r = MatrixSymbol("x", D, 1), MatrixSymbol("w", D, 1), MatrixSymbol("r", 1, D)
lam = MatrixSymbol("lam", 1, 1)
p = sigmoid(X * w)

# (id, loss, the vector parameter, its Hessian as the Cookbook writes it)
HESSIANS = [
    ("x^T A x (Cookbook 81)", (x.T * A * x)[0, 0], x, A + A.T),
    ("x A x^T, a row", (r * A * r.T)[0, 0], r, A + A.T),
    ("least squares |M x - c|^2 (Cookbook 84)", Trace((M * x - c).T * (M * x - c)), x, 2 * M.T * M),
    ("logistic regression", bce(p, y), w,
     X.T * HadamardProduct(HadamardProduct(p, OneMatrix(N, 1) - p) * OneMatrix(1, D), X) / N),
    ("ridge regression", mse(X * w, y) + lam[0, 0] * (w.T * w)[0, 0], w, 2 * X.T * X / N + 2 * lam[0, 0] * Identity(D)),
    ("linear loss", (c.T * M * x)[0, 0], x, ZeroMatrix(D, D)),
]


def draw(expr, rng) -> dict:
    values = {}
    for m in sorted(expr.atoms(MatrixSymbol), key=lambda m: m.name):
        values[m.name] = rng.uniform(-1, 1, tuple(int(d.subs(DIMS)) if hasattr(d, "subs") else int(d) for d in m.shape))
    if "y" in values:
        values["y"] = rng.uniform(0.1, 0.9, values["y"].shape)
    for name in ("A", "B"):
        if name in values:
            values[name] = np.eye(3) + 0.3 * values[name]
    return values


def value(expr, values) -> np.ndarray:
    return np.asarray(evaluate(expr, values, DIMS), dtype=float)


def torch_hessian(loss, param, values) -> np.ndarray:
    ops = TorchOps()
    torch = ops.torch
    fixed = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items() if k != param.name}

    def of_param(flat):
        return evaluate(loss, {**fixed, param.name: flat.reshape(values[param.name].shape)}, DIMS, ops).reshape(())

    at = torch.tensor(values[param.name].ravel(), dtype=torch.float64)
    return torch.autograd.functional.hessian(of_param, at).numpy()


@pytest.mark.parametrize(("loss", "param", "cookbook"), [row[1:] for row in HESSIANS], ids=[row[0] for row in HESSIANS])
def test_the_hessian_equals_the_cookbook_and_torch(loss, param, cookbook):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    hessian = derive.gradients(loss, [param]).hessian(param)
    n = DIMS[D]
    assert hessian.shape == (D, D)
    values = draw(loss, np.random.default_rng(0))
    got = value(hessian, values)
    got = np.broadcast_to(got, (n, n)) if got.ndim == 0 else got   # a zero Hessian
    np.testing.assert_allclose(got, np.broadcast_to(value(cookbook, values), (n, n)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, torch_hessian(loss, param, values), rtol=1e-10, atol=1e-12)


def test_the_quadratic_forms_hessian_is_a_plus_a_transpose_exactly():
    # equal as SymPy reads them once written in its canonical order (doit sorts a sum's terms)
    assert derive.gradients((x.T * A * x)[0, 0], [x]).hessian(x).doit() == A + A.T
    assert derive.gradients(Trace((M * x - c).T * (M * x - c)), [x]).hessian(x).doit() == 2 * M.T * M


def test_the_logistic_hessian_never_builds_a_diagonal_or_an_n_by_n_matrix():
    hessian = derive.gradients(bce(p, y), [w]).hessian(w)
    nodes = list(preorder_traversal(hessian))
    assert not any(isinstance(n, DiagMatrix) for n in nodes)
    assert not any(getattr(n, "shape", None) == (N, N) for n in nodes), hessian
    assert X in hessian.atoms(MatrixSymbol) and hessian.shape == (D, D)


V = MatrixSymbol("V", D, D)
Xi = Inverse(A)
# (id, scalar of the matrix A, its HVP along V as the Cookbook's second derivatives give it)
IDENTITIES = [
    ("tr(A^T B A) (Cookbook 111)", Trace(A.T * B * A), B * V + B.T * V),
    ("tr(A B A^T C)", Trace(A * B * A.T * MatrixSymbol("C", D, D)),
     MatrixSymbol("C", D, D).T * V * B.T + MatrixSymbol("C", D, D) * V * B),
    ("tr(A^2)", Trace(A * A), 2 * V.T),
    ("log det A (Cookbook 57)", log(Determinant(A)), -Xi.T * V.T * Xi.T),
    ("det A (Cookbook 49)", Determinant(A),
     Determinant(A) * (Trace(Xi * V) * Xi.T - Xi.T * V.T * Xi.T)),
    ("tr(A^-1 B) (Cookbook 63)", Trace(Xi * B), Xi.T * V.T * Xi.T * B.T * Xi.T + Xi.T * B.T * Xi.T * V.T * Xi.T),
]


@pytest.mark.parametrize(("loss", "cookbook"), [row[1:] for row in IDENTITIES], ids=[row[0] for row in IDENTITIES])
def test_the_hvp_equals_the_cookbooks_second_derivative(loss, cookbook):
    g = derive.gradients(loss, [A])
    hvp = g.hvp({A: V})
    rng = np.random.default_rng(1)
    values = {**draw(loss, rng), "V": rng.standard_normal((3, 3))}
    np.testing.assert_allclose(value(hvp[A], values), value(cookbook, values), rtol=1e-10, atol=1e-12)


def test_a_wrong_hessian_read_off_is_refused_by_its_check(monkeypatch):
    from derive.core import derivation
    monkeypatch.setattr(derivation, "read_off", lambda hvp, direction: 2 * A)   # half the Cookbook's A + A^T
    g = derive.gradients((x.T * A * x)[0, 0] + (x.T * x)[0, 0] ** 2, [x])
    with pytest.raises(derive.errors.GradientMismatch, match="component for x is wrong"):
        g.hessian(x)


c1, T = MatrixSymbol("c1", 1, 1), MatrixSymbol("T", N, D)
# (id, loss, a vector parameter): Hessians with no hand-written form, against torch only
MORE = [
    ("a tanh network", mse(tanh(X * w) * MatrixSymbol("u", 1, 2), MatrixSymbol("Y", N, 2)), w),
    ("a tanh network's row", mse(tanh(X * r.T) * MatrixSymbol("u", 1, 2), MatrixSymbol("Y", N, 2)), r),
    ("a 1 x 1 bias", bce(sigmoid(X * w + OneMatrix(N, 1) * c1), y), c1),
    ("a row spread over the batch", mse(derive.softplus(OneMatrix(N, 1) * r), T), r),
    ("w scaled by its own norm", mse(X * w * (w.T * w), y), w),
]


@pytest.mark.parametrize(("loss", "param"), [row[1:] for row in MORE], ids=[row[0] for row in MORE])
def test_more_hessians_equal_torch(loss, param):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    hessian = derive.gradients(loss, [param]).hessian(param)
    values = draw(loss, np.random.default_rng(3))
    np.testing.assert_allclose(value(hessian, values), torch_hessian(loss, param, values), rtol=1e-10, atol=1e-12)


def test_a_hessian_derive_cannot_read_off_is_refused_with_a_pointer_to_hvp():
    # a row bias under two layers (one layer is read off, tests/core/test_hessian_read_off.py): the HVP's
    # 1^T (t ⊙ ((C ⊙ L diag(g) R) B^T)) couples three indices in a cycle, with no vector to contract C
    b, B, TK = MatrixSymbol("b", 1, D), MatrixSymbol("B", D, K), MatrixSymbol("TK", N, K)
    g = derive.gradients(derive.cross_entropy(tanh(X * A + OneMatrix(N, 1) * b) * B, TK), [b])
    with pytest.raises(derive.UnsupportedOperation, match="use g.hvp with a direction instead") as refused:
        g.hessian(b)
    # it names the direction and the part's shape, and quotes only the start of the part (thousands of characters)
    assert "direction V_b" in str(refused.value) and "(N x " in str(refused.value) and len(str(refused.value)) < 500
    assert g.hvp({b: MatrixSymbol("U", 1, D)})[b].shape == (1, D)   # the HVP it points to is there, checked
