"""Hessian-vector products (``g.hvp``) against independent truths, one row per network.

Each row's closed-form HVP, evaluated by the test evaluator (tests/evaluator.py, which reads no rule),
must equal
* ``torch.autograd.functional.hvp`` of the same loss evaluated with torch ops,
* central differences of PyTorch autograd's gradient along the direction,
and satisfy the symmetry of a Hessian, <U, H V> = <V, H U>. Each ``g.hvp`` also ran derive's own check
against mixed second differences of the loss (``g.hvp_check``); a wrong tangent rule is refused by it
and by ``g.verify``. The closed forms are matrix products, Hadamard products and sums: no Kronecker
product, no diagonal matrix of a vector.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sympy import (
    Determinant,
    DiagMatrix,
    DiagonalMatrix,
    DiagonalOf,
    HadamardPower,
    Inverse,
    KroneckerProduct,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    ZeroMatrix,
    log,
    preorder_traversal,
)

import derive
from derive.core.activations import elu, exp, gelu, leaky_relu, relu, sigmoid, silu, softplus, tanh
from derive.core.activations import log as log_
from derive.core.losses import bce, cross_entropy, mse
from derive.core.rules import RULES
from derive.core.softmax import log_softmax
from derive.errors import GradientMismatch
from derive.examples.layer_norm import layer_norm

from ..evaluator import evaluate, torch_gradients, torch_hvp

N, D, H, C = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "H", "C"))
DIMS = {N: 4, D: 3, H: 3, C: 2}
X, y = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1)
w, W, b = MatrixSymbol("w", D, 1), MatrixSymbol("W", D, H), MatrixSymbol("b", 1, H)
W2, b2, Y = MatrixSymbol("W2", H, C), MatrixSymbol("b2", 1, C), MatrixSymbol("Y", N, C)
Q = MatrixSymbol("Q", N, H)           # targets on the simplex (each row sums to 1)
A, S = MatrixSymbol("A", D, D), MatrixSymbol("S", D, D)
ones = OneMatrix(N, 1)
LAYER_NORM = layer_norm()

# (id, loss, parameters, the parameters given a direction: None for all of them)
NETWORKS = [
    ("logistic regression", bce(sigmoid(X * w), y), [w], None),
    ("logistic regression with a bias", bce(sigmoid(X * w + ones * MatrixSymbol("c", 1, 1)), y),
     [w, MatrixSymbol("c", 1, 1)], None),
    ("softmax regression", cross_entropy(X * W + ones * b, Q), [W, b], None),
    ("softmax regression, targets summing to 1", cross_entropy(X * W + ones * b, Q, targets_sum_to_one=True),
     [W, b], None),
    ("log-softmax pairing", -Trace(Q.T * log_softmax(X * W)), [W], None),
    ("tanh MLP", mse(tanh(X * W + ones * b) * W2 + ones * b2, Y), [W, b, W2, b2], None),
    ("tanh MLP, only W2 moves", mse(tanh(X * W + ones * b) * W2 + ones * b2, Y), [W, b, W2, b2], [W2]),
    ("layer norm", mse(LAYER_NORM.output, MatrixSymbol("T", N, D)), list(LAYER_NORM.params), None),
    ("log-det and inverse", -log(Determinant(A)) + Trace(Inverse(A) * S), [A], None),
    ("determinant", Determinant(A) ** 2, [A], None),
    ("tied weights", mse(sigmoid(X * W) * W.T, X), [W], None),
    ("Hadamard square", mse(HadamardPower(X * W, 2) * W2, Y), [W, W2], None),
] + [
    (f"activation {f.__name__}", mse(f(X * W + ones * b) * W2, Y), [W, b, W2], None)
    for f in (relu, leaky_relu, elu, sigmoid, tanh, gelu, silu, softplus, exp)
] + [("activation log", mse(log_(sigmoid(X * W)) * W2, Y), [W, W2], None)]

IDS = [row[0] for row in NETWORKS]
EXACT = 1e-8          # autograd's HVP is exact up to rounding
DIFFERENCES = 1e-6    # central differences of the gradient at a step of 1e-5


def draw(loss, rng) -> dict:
    """Values for every matrix of ``loss``, each in its domain."""
    values = {}
    for m in sorted(loss.atoms(MatrixSymbol), key=lambda m: m.name):
        shape = tuple(int(d.subs(DIMS)) if hasattr(d, "subs") else int(d) for d in m.shape)
        values[m.name] = rng.uniform(-1, 1, shape)
    if "A" in values:
        values["A"] = np.eye(values["A"].shape[0]) + 0.3 * values["A"]
    if "S" in values:
        values["S"] = values["S"] @ values["S"].T
    if "y" in values:
        values["y"] = rng.uniform(0.1, 0.9, values["y"].shape)
    if "Q" in values:
        values["Q"] = rng.uniform(0.1, 1, values["Q"].shape)
        values["Q"] /= values["Q"].sum(axis=1, keepdims=True)
    return values


def directions_of(wrt, moving, prefix="V"):
    return {p: MatrixSymbol(f"{prefix}_{p.name}", *p.shape) for p in (moving or wrt)}


def derived(row, seed=0):
    _, loss, wrt, moving = row
    g = derive.gradients(loss, wrt)
    rng = np.random.default_rng(seed)
    values = draw(loss, rng)
    directions = directions_of(wrt, moving)
    along = {p.name: rng.standard_normal(values[p.name].shape) for p in directions}
    return g, values, directions, along


def closed_values(hvp, values, directions, along) -> dict:
    point = {**values, **{directions[p].name: along[p.name] for p in directions}}
    return {p.name: np.asarray(evaluate(hvp[p], point, DIMS), dtype=float) for p in hvp}


def assert_close(what: str, name: str, got, want, tolerance: float) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{name}: {what} has shape {got.shape}, the closed form {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want))))
    error = float(np.max(np.abs(got - want))) / scale
    assert error <= tolerance, f"HVP of {name}: closed form\n{want}\n{what}\n{got}\n(relative error {error:.1e})"


@pytest.mark.parametrize("row", NETWORKS, ids=IDS)
def test_hvp_equals_torch_autograd_hvp(row):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    g, values, directions, along = derived(row)
    hvp = g.hvp(directions)
    assert g.hvp_check is not None and g.hvp_check.points >= 1   # derive's own check ran, and passed
    closed = closed_values(hvp, values, directions, along)
    params = {p.name: values[p.name] for p in g.params}
    batch = {k: v for k, v in values.items() if k not in params}
    truth = torch_hvp(row[1], params, batch, DIMS, along)
    for name, value in closed.items():
        assert_close("torch.autograd.functional.hvp", name, truth[name], value, EXACT)


@pytest.mark.parametrize("row", NETWORKS, ids=IDS)
def test_hvp_equals_central_differences_of_the_autograd_gradient(row):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    g, values, directions, along = derived(row, seed=1)
    closed = closed_values(g.hvp(directions, check=False), values, directions, along)
    names = [p.name for p in g.params]
    step = 1e-5
    shifted = []
    for sign in (1, -1):
        moved = {k: v + sign * step * along[k] if k in along else v for k, v in values.items()}
        shifted.append(torch_gradients(row[1], moved, DIMS, names)[1])
    for name in names:
        assert_close("central differences of autograd's gradient", name,
                     (shifted[0][name] - shifted[1][name]) / (2 * step), closed[name], DIFFERENCES)


@pytest.mark.parametrize("row", NETWORKS, ids=IDS)
def test_the_hessian_is_symmetric(row):
    _, loss, wrt, _ = row
    g = derive.gradients(loss, wrt)
    rng = np.random.default_rng(2)
    values = draw(loss, rng)
    us, vs = directions_of(wrt, None, "U"), directions_of(wrt, None, "V")
    u = {p.name: rng.standard_normal(values[p.name].shape) for p in wrt}
    v = {p.name: rng.standard_normal(values[p.name].shape) for p in wrt}
    h_v = closed_values(g.hvp(vs, check=False), values, vs, v)
    h_u = closed_values(g.hvp(us, check=False), values, us, u)
    u_hv = sum(float(np.vdot(u[k], h_v[k])) for k in u)
    v_hu = sum(float(np.vdot(v[k], h_u[k])) for k in v)
    assert abs(u_hv - v_hu) <= EXACT * max(1.0, abs(u_hv)), f"<U, H V> = {u_hv} but <V, H U> = {v_hu}"


FORBIDDEN = (KroneckerProduct, DiagMatrix, DiagonalMatrix, DiagonalOf)


@pytest.mark.parametrize("row", NETWORKS, ids=IDS)
def test_the_closed_forms_are_products_hadamard_products_and_sums(row):
    g, _, directions, _ = derived(row)
    hvp = g.hvp(directions, check=False)
    for p in hvp:
        nodes = list(preorder_traversal(hvp[p]))
        assert not [n for n in nodes if isinstance(n, FORBIDDEN)], f"HVP of {p}: {hvp[p]}"
        # no N x N matrix of the batch, other than a ones-matrix (a sum, as the printers write it)
        square = [n for n in nodes if getattr(n, "shape", None) == (N, N) and not isinstance(n, OneMatrix)]
        assert not square, f"HVP of {p} builds an N x N matrix: {square[0]}"
    for step in hvp.steps:   # the published steps read only names, directions and the network's matrices
        assert step.definition.shape == step.shape


def test_params_left_out_of_the_directions_stay_put_but_get_their_cross_terms():
    row = NETWORKS[IDS.index("tanh MLP, only W2 moves")]
    g, _, directions, _ = derived(row)
    hvp = g.hvp(directions)
    assert set(hvp.directions) == {W2}
    assert MatrixSymbol("V_W2", H, C) in hvp[W].atoms(MatrixSymbol)   # d/dW <dL/dW2, V>: not zero


@pytest.mark.parametrize("row", [r for r in NETWORKS if r[0] in (
    "logistic regression", "softmax regression", "log-det and inverse")], ids=lambda r: r[0])
def test_verify_checks_the_hvp_against_the_elementwise_second_derivatives(row):
    g = derive.gradients(row[1], row[2])
    results = g.verify({N: 2, D: 2, H: 2, C: 2}, hvp=True, symbolic=False)
    second = [r for r in results if r.order == 2]
    assert {r.param for r in second} == set(row[2])
    assert all(r.max_relative_error <= 1e-10 for r in second)


def _broken_inverse_tangent(node, out, tangents):   # d(A^-1) with the sign lost
    from derive.core.algebra import mat_mul
    return mat_mul(out, tangents[0], out)


@pytest.fixture
def broken_inverse(monkeypatch):
    monkeypatch.setitem(RULES, Inverse, replace(RULES[Inverse], tangent=_broken_inverse_tangent))


def test_a_wrong_tangent_rule_is_refused_by_the_built_in_check(broken_inverse):
    g = derive.gradients(-log(Determinant(A)) + Trace(Inverse(A) * S), [A])
    with pytest.raises(GradientMismatch, match="the HVP's component for A is wrong"):
        g.hvp({A: MatrixSymbol("V", D, D)})


def test_a_wrong_tangent_rule_is_refused_by_verify(broken_inverse):
    g = derive.gradients(Trace(Inverse(A) * S), [A])
    g.hvp({A: MatrixSymbol("V", D, D)}, check=False)
    with pytest.raises(GradientMismatch, match="dL/dA"):
        g.verify({D: 2}, symbolic=False)


def test_no_direction_gives_zero_matrices():
    g = derive.gradients(bce(sigmoid(X * w), y), [w])
    hvp = g.hvp({})
    assert hvp.steps == () and hvp[w] == ZeroMatrix(D, 1)
