"""A review of the second-order core: inputs a new user may try, each against a truth written here.

Every row's loss is written twice: as derive's SymPy declaration and, from scratch in this file, as a
torch function of the same matrices; ``torch.autograd.functional.hvp`` (and ``torch.func.hessian``) of
the torch function is the truth. derive's closed forms are evaluated by the test evaluator
(tests/evaluator.py, which reads no rule). Then the inputs the API must refuse with a clear error.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sympy import (
    BlockMatrix,
    Determinant,
    HadamardPower,
    Inverse,
    MatMul,
    Matrix,
    MatrixSymbol,
    OneMatrix,
    Rational,
    Symbol,
    Trace,
    exp,
    log,
    sin,
)

import derive
from derive import bce, cross_entropy, elu, leaky_relu, log_softmax, mse, sigmoid, softmax, tanh
from derive.core.rules import RULES, is_zero
from derive.errors import GradientMismatch, InvalidParameter, ShapeError

from ..evaluator import evaluate

torch = pytest.importorskip("torch", reason="torch is the independent truth of this file")
F = torch.nn.functional

N, D, H = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "H"))
n, d, h = 4, 3, 2
DIMS = {N: n, D: d, H: h}
X, W, b, T = MatrixSymbol("X", N, D), MatrixSymbol("W", D, H), MatrixSymbol("b", 1, H), MatrixSymbol("T", N, H)
W1, W2, Q = MatrixSymbol("W1", D, 1), MatrixSymbol("W2", D, 1), MatrixSymbol("Q", N, H)
T2 = MatrixSymbol("T2", N, 2)   # the target of a product with an explicit N x 2 right factor
X3, Ws = MatrixSymbol("X3", N, 3), MatrixSymbol("Ws", 3, H)
A, B = MatrixSymbol("A", D, D), MatrixSymbol("B", D, D)
P, R = MatrixSymbol("P", N, D), MatrixSymbol("R", N, D)          # P positive: a fractional power's base
t, e = MatrixSymbol("t", 1, 1), MatrixSymbol("e", 1, 1)
ones = OneMatrix(N, 1)
Z = X * W + ones * b


def _values(rng) -> dict:
    q = rng.uniform(0.1, 1, (n, h))
    return {"X": rng.standard_normal((n, d)), "W": rng.standard_normal((d, h)), "b": rng.standard_normal((1, h)),
            "T": rng.uniform(0.1, 0.9, (n, h)), "T2": rng.standard_normal((n, 2)), "X3": rng.standard_normal((n, 3)), "Ws": rng.standard_normal((3, h)), "W1": rng.standard_normal((d, 1)), "W2": rng.standard_normal((d, 1)),
            "Q": q, "Q1": q / q.sum(axis=1, keepdims=True), "A": np.eye(d) + 0.3 * rng.standard_normal((d, d)),
            "B": rng.standard_normal((d, d)), "P": rng.uniform(0.5, 2, (n, d)), "R": rng.standard_normal((n, d)),
            "t": np.array([[0.7]]), "e": np.array([[1.3]])}


def _mse(prediction, target):
    return ((prediction - target) ** 2).sum() / prediction.shape[0]


def _ce(logits, target, dim=1):
    return -(target * torch.log_softmax(logits, dim)).sum() / n


# (id, loss, wrt, the same loss in torch: a function of a dict of tensors by name)
ROWS = [
    ("tied weights through a transpose", mse(tanh(X * W) * W.T, X), [W], lambda m: _mse(torch.tanh(m["X"] @ m["W"]) @ m["W"].T, m["X"])),
    ("an inverse and a determinant of one parameter", Trace(Inverse(A) * B) + Determinant(A) ** 2 + log(Determinant(A)),
     [A], lambda m: torch.trace(torch.linalg.inv(m["A"]) @ m["B"]) + torch.det(m["A"]) ** 2 + torch.logdet(m["A"])),
    ("det(A) times tr(A^-1 B)", Determinant(A) * Trace(Inverse(A) * B), [A],
     lambda m: torch.det(m["A"]) * torch.trace(torch.linalg.inv(m["A"]) @ m["B"])),
    ("a 1 x 1 parameter as a scalar, t A t A B", Trace((t[0, 0] * A) * (t[0, 0] * A) * B), [t, A],
     lambda m: torch.trace((m["t"][0, 0] * m["A"]) @ (m["t"][0, 0] * m["A"]) @ m["B"])),
    ("exp(t) and t^3 of a 1 x 1", exp(t[0, 0]) * Trace(A * B) + t[0, 0] ** 3, [t],
     lambda m: torch.exp(m["t"][0, 0]) * torch.trace(m["A"] @ m["B"]) + m["t"][0, 0] ** 3),
    ("A^3", Trace(A ** 3 * B), [A], lambda m: torch.trace(m["A"] @ m["A"] @ m["A"] @ m["B"])),
    ("A^4 and A^2 together", Trace((A ** 4).T * B * A ** 2), [A],
     lambda m: torch.trace(torch.linalg.matrix_power(m["A"], 4).T @ m["B"] @ m["A"] @ m["A"])),
    ("A^-2", Trace(A ** -2 * B), [A], lambda m: torch.trace(torch.linalg.matrix_power(torch.linalg.inv(m["A"]), 2) @ m["B"])),
    ("Hadamard power 3/2 of a parameter", mse(HadamardPower(P, Rational(3, 2)), R), [P], lambda m: _mse(m["P"] ** 1.5, m["R"])),
    ("Hadamard power -1 of a parameter", mse(HadamardPower(P, -1), R), [P], lambda m: _mse(1 / m["P"], m["R"])),
    ("a learnable exponent", mse(HadamardPower(P, e[0, 0]), R), [P, e], lambda m: _mse(m["P"] ** m["e"][0, 0], m["R"])),
    ("a BlockMatrix of parameters", mse(tanh(X * BlockMatrix([[W1, W2]])), T2), [W1, W2],
     lambda m: _mse(torch.tanh(m["X"] @ torch.cat([m["W1"], m["W2"]], 1)), m["T2"])),
    ("an explicit Matrix of parameter entries",
     mse(X3 * Matrix([[sin(W[0, 0]), W[0, 0] * W[1, 1]], [W[1, 1] ** 2, exp(W[0, 0])], [W[0, 0], 1]]), T2), [W],
     lambda m: _mse(m["X3"] @ torch.stack([
         torch.stack([torch.sin(m["W"][0, 0]), m["W"][0, 0] * m["W"][1, 1]]),
         torch.stack([m["W"][1, 1] ** 2, torch.exp(m["W"][0, 0])]),
         torch.stack([m["W"][0, 0], torch.tensor(1.0, dtype=torch.float64)])]), m["T2"])),
    # concrete shapes: at symbolic ones the first-order check's small dims (D = 2) leave X[:, 2:] empty
    ("slices of a parameter", mse(sigmoid(X3[:, :2] * Ws[:2, :] + X3[:, 2:] * Ws[2:, :]), T) + Trace(Ws[:2, :].T * Ws[:2, :]),
     [Ws], lambda m: _mse(torch.sigmoid(m["X3"][:, :2] @ m["Ws"][:2] + m["X3"][:, 2:] @ m["Ws"][2:]), m["T"])
     + torch.trace(m["Ws"][:2].T @ m["Ws"][:2])),
    ("softmax along axis 0", mse(softmax(Z, axis=0), T), [W, b], lambda m: _mse(torch.softmax(m["X"] @ m["W"] + m["b"], 0), m["T"])),
    ("log-softmax along axis 0", mse(log_softmax(Z, axis=0), T), [W, b],
     lambda m: _mse(torch.log_softmax(m["X"] @ m["W"] + m["b"], 0), m["T"])),
    ("cross-entropy, targets not summing to 1", cross_entropy(Z, Q), [W, b], lambda m: _ce(m["X"] @ m["W"] + m["b"], m["Q"])),
    ("cross-entropy, targets_sum_to_one", cross_entropy(Z, MatrixSymbol("Q1", N, H), targets_sum_to_one=True), [W, b],
     lambda m: _ce(m["X"] @ m["W"] + m["b"], m["Q1"])),
    ("cross-entropy, examples in columns", cross_entropy((X * W).T, Q.T, examples="columns"), [W],
     lambda m: _ce((m["X"] @ m["W"]).T, m["Q"].T, 0)),
    ("bce, reduction sum", bce(sigmoid(Z), T, reduction="sum"), [W, b],
     lambda m: F.binary_cross_entropy(torch.sigmoid(m["X"] @ m["W"] + m["b"]), m["T"], reduction="sum")),
    ("mse, reduction sum", mse(tanh(X * W) * W.T, X, reduction="sum"), [W],
     lambda m: ((torch.tanh(m["X"] @ m["W"]) @ m["W"].T - m["X"]) ** 2).sum()),
    ("leaky_relu 0.2 (its second derivative 0 a.e.)", mse(leaky_relu(Z, 0.2) * W.T, X), [W, b],
     lambda m: _mse(F.leaky_relu(m["X"] @ m["W"] + m["b"], 0.2) @ m["W"].T, m["X"])),
    ("elu 0.5", mse(elu(Z, 0.5), T), [W, b], lambda m: _mse(F.elu(m["X"] @ m["W"] + m["b"], 0.5), m["T"])),
]


def _torch_hvp(loss_of, wrt, values, along) -> dict:
    names = [p.name for p in wrt]
    fixed = {k: torch.tensor(v) for k, v in values.items() if k not in names}
    primal = tuple(torch.tensor(values[k]) for k in names)
    tangent = tuple(torch.tensor(along[k]) if k in along else torch.zeros(values[k].shape, dtype=torch.float64)
                    for k in names)
    _, products = torch.autograd.functional.hvp(lambda *ps: loss_of({**fixed, **dict(zip(names, ps))}), primal, tangent)
    return {k: v.numpy() for k, v in zip(names, products)}


def _closed(hvp, values, directions, along) -> dict:
    point = {**values, **{directions[p].name: along[p.name] for p in directions}}
    return {p.name: np.asarray(evaluate(hvp[p], point, DIMS), dtype=float) for p in hvp}


def _assert_close(got: dict, want: dict) -> None:
    for name, truth in want.items():
        value = np.broadcast_to(got[name], truth.shape)
        np.testing.assert_allclose(value, truth, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(truth).max())),
                                   err_msg=f"the HVP's component for {name}")


@pytest.mark.parametrize(("loss", "wrt", "loss_of"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_hvp_equals_torch_on_a_users_inputs(loss, wrt, loss_of):
    rng = np.random.default_rng(0)
    values = _values(rng)
    directions = {p: MatrixSymbol(f"V_{p.name}", *p.shape) for p in wrt}
    along = {p.name: rng.standard_normal(values[p.name].shape) for p in wrt}
    hvp = derive.gradients(loss, wrt).hvp(directions)   # derive's own check ran too
    _assert_close(_closed(hvp, values, directions, along), _torch_hvp(loss_of, wrt, values, along))


def test_a_layer_derivations_hvp_is_the_hessian_of_the_pairing_with_a_fixed_upstream():
    layer = derive.vjp(tanh(Z), [X], [W, b])
    rng = np.random.default_rng(1)
    values = _values(rng)
    values[layer.upstream.name] = rng.standard_normal((n, h))
    directions = {W: MatrixSymbol("V", D, H)}
    along = {"W": rng.standard_normal((d, h))}
    hvp = layer.hvp(directions)
    truth = _torch_hvp(lambda m: (m[layer.upstream.name] * torch.tanh(m["X"] @ m["W"] + m["b"])).sum(),
                       [X, W, b], values, along)
    _assert_close(_closed(hvp, values, directions, along), truth)


# --- one direction shared by two parameters; names that clash ----------------------------------

U1, U2 = MatrixSymbol("U1", D, H), MatrixSymbol("U2", D, H)
TWO = mse(tanh(X * U1) + sigmoid(X * U2), T)


def test_one_direction_given_to_two_parameters_of_its_shape_is_checked_as_one():
    # the stacked direction (V, V): a legitimate input, which the built-in check must not refuse
    rng = np.random.default_rng(2)
    values = {**_values(rng), "U1": rng.standard_normal((d, h)), "U2": rng.standard_normal((d, h))}
    V = MatrixSymbol("V", D, H)
    v = rng.standard_normal((d, h))
    hvp = derive.gradients(TWO, [U1, U2]).hvp({U1: V, U2: V})
    got = {p.name: np.asarray(evaluate(hvp[p], {**values, "V": v}, DIMS), dtype=float) for p in hvp}
    truth = _torch_hvp(lambda m: _mse(torch.tanh(m["X"] @ m["U1"]) + torch.sigmoid(m["X"] @ m["U2"]), m["T"]),
                       [U1, U2], values, {"U1": v, "U2": v})
    _assert_close(got, truth)


def test_two_directions_of_one_name_and_different_shapes_are_refused_naming_both():
    g = derive.gradients(mse(tanh(Z), T), [W, b])
    with pytest.raises(InvalidParameter, match=r"W and b .*named V"):
        g.hvp({W: MatrixSymbol("V", D, H), b: MatrixSymbol("V", 1, H)})


@pytest.mark.parametrize("name", ["Z_1", "H_1"])
def test_a_direction_named_like_an_intermediate_of_the_derivation_is_refused(name):
    g = derive.gradients(mse(tanh(Z), T), [W, b])
    assert name in {s.name for s, _ in g.bindings}
    with pytest.raises(InvalidParameter, match=f"named {name}"):
        g.hvp({W: MatrixSymbol(name, D, H)})


def test_directions_that_are_not_a_mapping_are_refused():
    g = derive.gradients(mse(tanh(Z), T), [W, b])
    with pytest.raises(InvalidParameter, match="directions must be a mapping"):
        g.hvp([MatrixSymbol("V", D, H)])


def test_a_direction_of_the_wrong_shape_names_both_shapes():
    g = derive.gradients(mse(tanh(Z), T), [W, b])
    with pytest.raises(ShapeError, match="V is H x D but the parameter W is D x H"):
        g.hvp({W: MatrixSymbol("V", H, D)})


# --- Hessians of vector and 1 x 1 parameters, against torch.func.hessian ---------------------------

w, r, y = MatrixSymbol("w", D, 1), MatrixSymbol("r", 1, D), MatrixSymbol("y", N, 1)
Xc, Wc, bc, Tc = MatrixSymbol("Xc", D, N), MatrixSymbol("Wc", H, D), MatrixSymbol("bc", H, 1), MatrixSymbol("Tc", H, N)

# (id, loss, the parameter, the loss in torch)
HESSIANS = [
    ("a 1 x 1 parameter used as a scalar", mse(tanh(t[0, 0] * P), R), t, lambda m: _mse(torch.tanh(m["t"][0, 0] * m["P"]), m["R"])),
    ("a 1 x 1 parameter in scalar functions", (t * t)[0, 0] * exp(t[0, 0]), t, lambda m: m["t"][0, 0] ** 2 * torch.exp(m["t"][0, 0])),
    ("a 1 x 1 parameter's matrix power", (t ** 3)[0, 0] + (t * t)[0, 0], t, lambda m: m["t"][0, 0] ** 3 + m["t"][0, 0] ** 2),
    ("a 1 x 1 bias spread by ones", mse(tanh(P + ones * t * OneMatrix(1, D)), R), t, lambda m: _mse(torch.tanh(m["P"] + m["t"]), m["R"])),
    ("a column bias b 1^T, examples in columns", mse(tanh(Wc * Xc + bc * OneMatrix(1, N)), Tc, examples="columns"), bc,
     lambda m: ((torch.tanh(m["Wc"] @ m["Xc"] + m["bc"]) - m["Tc"]) ** 2).sum() / n),
    ("a row X r^T", mse(sigmoid(X * r.T), y), r, lambda m: _mse(torch.sigmoid(m["X"] @ m["r"].T), m["y"])),
    ("a row bias 1 r", mse(tanh(P + ones * r), R), r, lambda m: _mse(torch.tanh(m["P"] + m["r"]), m["R"])),
    ("w w^T twice", Trace(X * w * w.T * X.T * X * w * w.T * X.T), w,
     lambda m: torch.trace(m["X"] @ m["w"] @ m["w"].T @ m["X"].T @ m["X"] @ m["w"] @ m["w"].T @ m["X"].T)),
    ("softmax of X w along axis 0", mse(softmax(X * w, axis=0), y), w, lambda m: _mse(torch.softmax(m["X"] @ m["w"], 0), m["y"])),
]


def _hessian_values(rng) -> dict:
    return {**_values(rng), "w": rng.standard_normal((d, 1)), "r": rng.standard_normal((1, d)),
            "y": rng.standard_normal((n, 1)), "Xc": rng.standard_normal((d, n)), "Wc": rng.standard_normal((h, d)),
            "bc": rng.standard_normal((h, 1)), "Tc": rng.standard_normal((h, n))}


@pytest.mark.parametrize(("loss", "param", "loss_of"), [r[1:] for r in HESSIANS], ids=[r[0] for r in HESSIANS])
def test_the_hessian_equals_torch_func_hessian(loss, param, loss_of):
    values = _hessian_values(np.random.default_rng(3))
    hessian = derive.gradients(loss, [param]).hessian(param)
    assert hessian.shape == (param.shape[0] * param.shape[1],) * 2
    fixed = {k: torch.tensor(v) for k, v in values.items() if k != param.name}
    shape = values[param.name].shape
    truth = torch.func.hessian(lambda flat: loss_of({**fixed, param.name: flat.reshape(shape)}))(
        torch.tensor(values[param.name]).ravel()).numpy()
    got = np.broadcast_to(np.asarray(evaluate(hessian, values, DIMS), dtype=float), truth.shape)
    np.testing.assert_allclose(got, truth, rtol=1e-9, atol=1e-12)


# --- a wrong tangent rule is refused by the built-in check -----------------------------------------

def _first_term_only(node, out, tangents):   # the product rule losing every moving factor but the first
    from derive.core.algebra import mat_mul
    k = next(k for k, d in enumerate(tangents) if not is_zero(d))
    return mat_mul(*node.args[:k], tangents[k], *node.args[k + 1:])


def _no_curvature(node, out, tangents):      # d f(A) = dA: f' taken for 1
    return tangents[0]


def _uncentred_softmax(node, out, tangents):  # d softmax(Z) = softmax(Z) ⊙ dZ, the centring lost
    from derive.core.algebra import hadamard
    return hadamard(out, tangents[0])


def _exponent_lost(node, out, tangents):      # d(A^p) = A^(p-1) ⊙ dA, the factor p lost
    from derive.core.algebra import hadamard, hadamard_power
    return hadamard(hadamard_power(node.args[0], node.args[1] - 1), tangents[0])


# (id, the operation whose tangent rule is broken, the broken rule, a loss that needs it, wrt)
MUTATIONS = [
    ("product rule of a parameter used twice", MatMul, _first_term_only, mse(tanh(X * W) * W.T, X), [W]),
    ("tanh' taken for 1", type(tanh(X)), _no_curvature, mse(tanh(Z), T), [W, b]),
    ("softmax uncentred", softmax, _uncentred_softmax, mse(softmax(Z, axis=0), T), [W, b]),
    ("Hadamard power's p lost", HadamardPower, _exponent_lost, mse(HadamardPower(P, Rational(3, 2)), R), [P]),
]


@pytest.mark.parametrize(("operation", "broken", "loss", "wrt"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_a_wrong_tangent_rule_is_refused(monkeypatch, operation, broken, loss, wrt):
    g = derive.gradients(loss, wrt)   # first order untouched: the gradients are right
    rule = next(RULES[cls] for cls in operation.__mro__ if cls in RULES)   # tanh's is the elementwise rule
    monkeypatch.setitem(RULES, operation, replace(rule, tangent=broken))
    with pytest.raises(GradientMismatch, match="the HVP's component for .* is wrong"):
        g.hvp({p: MatrixSymbol(f"V_{p.name}", *p.shape) for p in wrt})
