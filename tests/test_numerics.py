"""Numerics of the generated code: huge logits, float32, determinism.

The truth here is PyTorch's own stable losses on the logits (``binary_cross_entropy_with_logits``,
``cross_entropy``) and autograd, computed from the logits the network produces, in the same dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol

import derive
from derive import codegen

torch = pytest.importorskip("torch", reason="PyTorch's stable losses are the truth here")
F = torch.nn.functional

N = Symbol("N", integer=True, positive=True)
SIZES = {"N": 4, "D": 3, "C": 3}


def network(loss: str, rows: bool):
    """One dense layer to logits, then bce on their sigmoid or softmax cross-entropy."""
    examples = "rows" if rows else "columns"
    X = MatrixSymbol("X", N, 3) if rows else MatrixSymbol("X", 3, N)
    W = MatrixSymbol("W", 3, 3)
    b = MatrixSymbol("b", 1, 3) if rows else MatrixSymbol("b", 3, 1)
    Y = MatrixSymbol("Y", N, 3) if rows else MatrixSymbol("Y", 3, N)
    Z = X * W + OneMatrix(N, 1) * b if rows else W * X + b * OneMatrix(1, N)
    if loss == "bce":
        return derive.bce(derive.sigmoid(Z), Y, examples=examples), [W, b]
    return derive.cross_entropy(Z, Y, examples=examples), [W, b]


CASES = [(loss, rows, dtype) for loss in ("bce", "cross_entropy") for rows in (True, False)
         for dtype in (np.float64, np.float32)]
IDS = [f"{loss}-{'rows' if rows else 'columns'}-{np.dtype(dtype).name}" for loss, rows, dtype in CASES]


def huge_inputs(loss: str, rows: bool, dtype, scale: float):
    """Inputs whose logits reach about ``scale`` in magnitude, with valid targets."""
    rng = np.random.default_rng(7)
    x = rng.choice([-1.0, 1.0], size=(4, 3))
    w = rng.uniform(-1, 1, size=(3, 3)) * scale
    b = rng.uniform(-1, 1, size=(1, 3))
    if loss == "bce":
        y = rng.uniform(0, 1, size=(4, 3))
    else:
        y = np.eye(3)[rng.integers(0, 3, size=4)]
    if not rows:
        x, w, b, y = x.T, w.T, b.T, y.T
    cast = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in {"X": x, "W": w, "b": b, "Y": y}.items()}
    return {"W": cast["W"], "b": cast["b"]}, {"X": cast["X"], "Y": cast["Y"]}


def torch_truth(loss: str, rows: bool, params: dict, batch: dict):
    t = {k: torch.tensor(v, requires_grad=k in params) for k, v in {**params, **batch}.items()}
    z = t["X"] @ t["W"] + t["b"] if rows else t["W"] @ t["X"] + t["b"]
    if not rows:
        z, y = z.T, t["Y"].T
    else:
        y = t["Y"]
    n = z.shape[0]
    if loss == "bce":
        value = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / n
    else:
        value = F.cross_entropy(z, y.argmax(dim=1), reduction="sum") / n
    grads = torch.autograd.grad(value, [t["W"], t["b"]])
    return value.detach().numpy(), {"W": grads[0].numpy(), "b": grads[1].numpy()}, float(z.detach().abs().max())


@pytest.fixture(scope="module")
def modules():
    out = {}
    for loss in ("bce", "cross_entropy"):
        for rows in (True, False):
            expr, wrt = network(loss, rows)
            out[loss, rows] = codegen.load_module(derive.to_numpy(derive.gradients(expr, wrt), f"{loss}_{rows}"))
    return out


@pytest.mark.parametrize(("loss", "rows", "dtype"), CASES, ids=IDS)
def test_logits_of_1e4_match_pytorchs_stable_losses(modules, loss, rows, dtype):
    params, batch = huge_inputs(loss, rows, dtype, scale=1e4)
    got_loss, got = modules[loss, rows].loss_and_grads(params, batch)
    want_loss, want, largest = torch_truth(loss, rows, params, batch)
    assert largest >= 1e3, "the logits are not huge: the test would not test anything"
    assert np.isfinite(got_loss) and all(np.all(np.isfinite(g)) for g in got.values())
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert float(got_loss) == pytest.approx(float(want_loss), rel=rtol)
    for name in params:
        scale = max(float(np.max(np.abs(want[name]))), 1.0)
        assert float(np.max(np.abs(got[name] - want[name]))) <= rtol * scale, name


@pytest.mark.parametrize(("loss", "rows", "dtype"), CASES, ids=IDS)
def test_dtype_is_kept_and_results_are_deterministic(modules, loss, rows, dtype):
    params, batch = huge_inputs(loss, rows, dtype, scale=1.0)
    first_loss, first = modules[loss, rows].loss_and_grads(params, batch)
    second_loss, second = modules[loss, rows].loss_and_grads({k: v.copy() for k, v in params.items()},
                                                             {k: v.copy() for k, v in batch.items()})
    assert np.asarray(first_loss).dtype == dtype
    assert {k: v.dtype for k, v in first.items()} == {k: np.dtype(dtype) for k in params}
    assert np.asarray(first_loss).tobytes() == np.asarray(second_loss).tobytes()
    assert all(first[k].tobytes() == second[k].tobytes() for k in params)
