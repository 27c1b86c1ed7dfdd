"""A second review of ``g.hessian``: inputs its authors did not write tests for.

Every Hessian is compared with ``torch.func.hessian`` of the loss written again here by hand in torch
(nothing of derive, nor of tests/evaluator.py's torch backend); derive's closed form is evaluated at the
same concrete dims and values with NumPy (tests/evaluator.py, which reads no rule). The first rows were
refused before this review although their form is readable: a term whose R is ``1 r`` (an n-vector's
entries in an explicit matrix, a column x in an outer product ``x u``) ties no index to the basis, so a
Hadamard product after it need not wait for a vector to contract it. The other rows passed already and
stay as a table of the review's inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import (
    Determinant,
    HadamardProduct,
    Inverse,
    Matrix,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    cos,
    log,
    preorder_traversal,
    sin,
)

import derive
from derive import bce, cross_entropy, mse

from ..evaluator import evaluate

torch = pytest.importorskip("torch", reason="torch.func.hessian is the independent truth")
F = torch.nn.functional

N, D, K = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "K"))
DIMS = {N: 4, D: 3, K: 2}
X, y, A, B = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1), MatrixSymbol("A", D, D), MatrixSymbol("B", D, D)
T, TK, BK, u = MatrixSymbol("T", N, D), MatrixSymbol("TK", N, K), MatrixSymbol("BK", K, K), MatrixSymbol("u", 1, K)
x, r, W = MatrixSymbol("x", D, 1), MatrixSymbol("r", 1, D), MatrixSymbol("W", D, D)
X2, T2, t, s = MatrixSymbol("X2", N, 2), MatrixSymbol("T2", N, 2), MatrixSymbol("t", 2, 1), MatrixSymbol("s", 1, 2)
X1, x1 = MatrixSymbol("X1", N, 1), MatrixSymbol("x1", 1, 1)
X3, x3, y4 = MatrixSymbol("X3", 4, 3), MatrixSymbol("x3", 3, 1), MatrixSymbol("y4", 4, 1)
Xt, Tc = MatrixSymbol("Xt", D, N), MatrixSymbol("Tc", D, N)
ONES = OneMatrix(N, 1)
SPREAD = X * A + ONES * r
ROTATION = Matrix([[cos(t[0, 0]), -sin(t[1, 0])], [sin(t[0, 0]), cos(t[1, 0]) * t[0, 0]]])


# the losses again in torch, from the README's definitions: mean over the N examples (rows)
def t_mse(pred, target):
    return ((pred - target) ** 2).sum() / pred.shape[0]


def t_bce(p, target):
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum() / p.shape[0]


def t_ce(z, target):
    return -(target * F.log_softmax(z, dim=1)).sum() / z.shape[0]


def t_rotation(v):
    t0, t1 = v["t"][0, 0], v["t"][1, 0]
    return torch.stack([torch.stack([torch.cos(t0), -torch.sin(t1)]), torch.stack([torch.sin(t0), torch.cos(t1) * t0])])


def t_explicit_row(v):
    s0, s1 = v["s"][0, 0], v["s"][0, 1]
    return torch.stack([torch.stack([s0, s1 ** 2]), torch.stack([torch.ones((), dtype=s0.dtype), s0 * s1])])


def spread(v):
    return v["X"] @ v["A"] + v["r"]


ACTIVATIONS = [
    ("gelu", derive.gelu, F.gelu),
    ("silu", derive.silu, F.silu),
    ("elu", derive.elu, F.elu),
    ("softplus", derive.softplus, F.softplus),
    ("tanh", derive.tanh, torch.tanh),
    ("sigmoid", derive.sigmoid, torch.sigmoid),
    ("exp", derive.exp, torch.exp),
]

# (id, loss, the vector parameter, the loss in torch of a dict of tensors)
CASES = [
    # refused before this review
    ("a 2-vector's entries in an explicit matrix under tanh", mse(derive.tanh(X2 * ROTATION), T2), t,
     lambda v: t_mse(torch.tanh(v["X2"] @ t_rotation(v)), v["T2"])),
    ("a 2-vector's explicit matrix used twice, under a softmax", mse(derive.softmax(derive.tanh(X2 * ROTATION) * ROTATION),
                                                                      T2), t,
     lambda v: t_mse(F.softmax(torch.tanh(v["X2"] @ t_rotation(v)) @ t_rotation(v), dim=1), v["T2"])),
    ("a 1 x 2 row's entries in an explicit matrix under tanh", mse(derive.tanh(X2 * Matrix(
        [[s[0, 0], s[0, 1] ** 2], [1, s[0, 0] * s[0, 1]]])), T2), s,
     lambda v: t_mse(torch.tanh(v["X2"] @ t_explicit_row(v)), v["T2"])),
    ("a column in an outer product x u under two layers", mse(derive.tanh(derive.tanh(X * x * u) * BK), TK), x,
     lambda v: t_mse(torch.tanh(torch.tanh(v["X"] @ v["x"] @ v["u"]) @ v["BK"]), v["TK"])),
    ("an outer product x u under a cross-entropy", cross_entropy(derive.sigmoid(X * x * u) * BK, TK), x,
     lambda v: t_ce(torch.sigmoid(v["X"] @ v["x"] @ v["u"]) @ v["BK"], v["TK"])),
    # read off already (now through the flattened L = c 1^T)
    ("a row through a product c r B under tanh", mse(derive.tanh(MatrixSymbol("c", N, 1) * r * B), T), r,
     lambda v: t_mse(torch.tanh(v["c"] @ v["r"] @ v["B"]), v["T"])),
    ("x^T A x, A not symmetric", (x.T * A * x)[0, 0], x, lambda v: (v["x"].T @ v["A"] @ v["x"]).sum()),
    ("x and x^T tied in two layers", mse(derive.tanh(X * W * x) * x.T * OneMatrix(D, 1), y), x,
     lambda v: t_mse(torch.tanh(v["X"] @ v["W"] @ v["x"]) * v["x"].sum(), v["y"])),
    ("x ⊙ x", mse(X * HadamardProduct(x, x), y), x, lambda v: t_mse(v["X"] @ (v["x"] * v["x"]), v["y"])),
    ("x through a slice, an entry and whole", mse(X * x + X[:, :2] * x[:2, :] * x[2, 0], y), x,
     lambda v: t_mse(v["X"] @ v["x"] + v["X"][:, :2] @ v["x"][:2, :] * v["x"][2, 0], v["y"])),
    *[(f"x under {name}", mse(f(X * x), y), x, lambda v, g=g: t_mse(g(v["X"] @ v["x"]), v["y"]))
      for name, f, g in ACTIVATIONS],
    ("x under log", mse(derive.log(derive.exp(X * x) + ONES), y), x,
     lambda v: t_mse(torch.log(torch.exp(v["X"] @ v["x"]) + 1), v["y"])),
    ("a row bias under softmax", mse(derive.softmax(SPREAD), T), r,
     lambda v: t_mse(F.softmax(spread(v), dim=1), v["T"])),
    ("a row bias under log-softmax", mse(derive.log_softmax(SPREAD), T), r,
     lambda v: t_mse(F.log_softmax(spread(v), dim=1), v["T"])),
    ("x spread over columns under softmax over columns",
     Trace(Tc.T * derive.softmax(A * x * OneMatrix(1, N) + Xt, examples="columns")), x,
     lambda v: (v["Tc"] * F.softmax(v["A"] @ v["x"] + v["Xt"], dim=0)).sum()),
    ("x under log-softmax over columns", Trace(Tc.T * derive.log_softmax(A * x * OneMatrix(1, N) + Xt,
                                                                         examples="columns")), x,
     lambda v: (v["Tc"] * F.log_softmax(v["A"] @ v["x"] + v["Xt"], dim=0)).sum()),
    ("a row bias under MSE", mse(derive.tanh(SPREAD), T), r, lambda v: t_mse(torch.tanh(spread(v)), v["T"])),
    ("a row bias under BCE", bce(derive.sigmoid(SPREAD), T), r, lambda v: t_bce(torch.sigmoid(spread(v)), v["T"])),
    ("a row bias under CE", cross_entropy(SPREAD, T), r, lambda v: t_ce(spread(v), v["T"])),
    ("a scaled loss", 3 * mse(derive.tanh(X * x), y), x, lambda v: 3 * t_mse(torch.tanh(v["X"] @ v["x"]), v["y"])),
    ("a 1 x n row, x A x^T", (r * A * r.T)[0, 0], r, lambda v: (v["r"] @ v["A"] @ v["r"].T).sum()),
    ("n = 1", mse(derive.tanh(X1 * x1), y), x1, lambda v: t_mse(torch.tanh(v["X1"] @ v["x1"]), v["y"])),
    ("concrete n", mse(derive.tanh(X3 * x3), y4), x3, lambda v: t_mse(torch.tanh(v["X3"] @ v["x3"]), v["y4"])),
    ("a trace of an inverse", Trace(Inverse(A + x * x.T)), x,
     lambda v: torch.trace(torch.linalg.inv(v["A"] + v["x"] @ v["x"].T))),
    ("a determinant", Determinant(A + x * x.T), x, lambda v: torch.linalg.det(v["A"] + v["x"] @ v["x"].T)),
    ("a log-determinant", log(Determinant(A + x * x.T)), x,
     lambda v: torch.log(torch.linalg.det(v["A"] + v["x"] @ v["x"].T))),
    ("a matrix power", Trace((A + x * x.T) ** 3), x,
     lambda v: torch.trace(torch.linalg.matrix_power(v["A"] + v["x"] @ v["x"].T, 3))),
    ("a transpose of a product", Trace((A * x).T * B * x), x, lambda v: ((v["A"] @ v["x"]).T @ v["B"] @ v["x"]).sum()),
    ("two terms that each use x", mse(derive.tanh(X * x), y) + bce(derive.sigmoid(X * x), y), x,
     lambda v: t_mse(torch.tanh(v["X"] @ v["x"]), v["y"]) + t_bce(torch.sigmoid(v["X"] @ v["x"]), v["y"])),
    ("a regularizer plus a data term", mse(derive.sigmoid(X * x), y) + (x.T * x)[0, 0], x,
     lambda v: t_mse(torch.sigmoid(v["X"] @ v["x"]), v["y"]) + (v["x"] ** 2).sum()),
    ("x only linear", Trace(OneMatrix(1, N) * derive.relu(X * x)) + Trace(OneMatrix(1, N) * X * x), x,
     lambda v: F.relu(v["X"] @ v["x"]).sum() + (v["X"] @ v["x"]).sum()),
]


def draw(loss, rng) -> dict:
    values = {}
    for m in sorted(loss.atoms(MatrixSymbol), key=lambda m: m.name):
        shape = tuple(int(d.subs(DIMS)) if hasattr(d, "subs") else int(d) for d in m.shape)
        values[m.name] = rng.uniform(-1, 1, shape)
    for name in ("y", "y4"):
        if name in values:
            values[name] = rng.uniform(0.1, 0.9, values[name].shape)
    for name, axis in (("T", 1), ("TK", 1), ("T2", 1), ("Tc", 0)):   # targets: probabilities
        if name in values:
            values[name] = np.abs(values[name]) / np.abs(values[name]).sum(axis=axis, keepdims=True)
    for name in ("A", "B"):   # I + E: a determinant > 0, a well-conditioned inverse, not symmetric
        if name in values:
            values[name] = np.eye(3) + 0.3 * values[name]
    return values


def torch_hessian(loss_of, param, values) -> np.ndarray:
    fixed = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items() if k != param.name}
    shape = values[param.name].shape
    at = torch.tensor(values[param.name].ravel(), dtype=torch.float64)
    return torch.func.hessian(lambda flat: loss_of({**fixed, param.name: flat.reshape(shape)}))(at).numpy()


@pytest.mark.parametrize(("loss", "param", "loss_of"), [row[1:] for row in CASES], ids=[row[0] for row in CASES])
def test_the_hessian_equals_torch_func_hessian_of_a_hand_written_loss(loss, param, loss_of):
    hessian = derive.gradients(loss, [param]).hessian(param)
    n = max(int(d.subs(DIMS)) if hasattr(d, "subs") else int(d) for d in param.shape)
    values = draw(loss, np.random.default_rng(11))
    got = np.broadcast_to(np.asarray(evaluate(hessian, values, DIMS), dtype=float), (n, n))
    np.testing.assert_allclose(got, torch_hessian(loss_of, param, values), rtol=1e-9, atol=1e-12)


def test_the_outer_product_hessian_builds_nothing_n_by_n():
    hessian = derive.gradients(mse(derive.tanh(derive.tanh(X * x * u) * BK), TK), [x]).hessian(x)
    assert hessian.shape == (D, D)
    assert not any(getattr(node, "shape", None) == (N, N) for node in preorder_traversal(hessian)), hessian


# --- errors that named a problem in words that said nothing ---------------------------------------------

def test_a_direction_whose_dims_only_share_a_name_says_so():
    g = derive.gradients(mse(derive.tanh(X * x), y), [x])
    with pytest.raises(derive.ShapeError, match="two different symbols both named D"):
        g.hvp({x: MatrixSymbol("V", Symbol("D"), 1)})   # it read "V is D x 1 but the parameter x is D x 1"


def test_a_namesake_of_the_parameter_is_told_apart_from_it():
    g = derive.gradients((x.T * A * x)[0, 0], [x])
    with pytest.raises(KeyError, match=r"x \(3 x 1\) is not the parameter x \(D x 1\)"):
        g.hessian(MatrixSymbol("x", 3, 1))                  # it read "x is not one of the parameters x"
    with pytest.raises(KeyError, match="two different symbols both named D"):
        g.hessian(MatrixSymbol("x", Symbol("D"), 1))


@pytest.mark.parametrize(("param", "direction", "message"), [
    (r, MatrixSymbol("V", D, 1), "the direction V is D x 1 but the parameter r is 1 x D"),
    (x, MatrixSymbol("V", 3, 1), "the direction V is 3 x 1 but the parameter x is D x 1"),
], ids=["a column for a row", "concrete dims for symbolic"])
def test_a_direction_of_the_wrong_shape_names_both_shapes(param, direction, message):
    g = derive.gradients(mse(derive.tanh(X * x), y) + (r * r.T)[0, 0], [x, r])
    with pytest.raises(derive.ShapeError, match=message):
        g.hvp({param: direction})


def test_a_matrix_parameters_hessian_points_to_hvp():
    g = derive.gradients(mse(derive.tanh(X * W * x), y), [W, x])
    with pytest.raises(derive.DeriveError, match=r"g.hvp\(\{W: V\}\)"):
        g.hessian(W)
    assert g.hessian(x).shape == (D, D)
