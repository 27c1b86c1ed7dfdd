"""Dims for networks with slices, entries and blocks at symbolic dims: the sizes derive picks make every
slice, block and entry non-empty and in range, and dims that do not are refused naming the slice.

The truth is PyTorch autograd of each loss written again here in torch (never derive's evaluator),
compared with the closed form expanded by SymPy at the dims the built-in check picked, and
``g.verify`` (the elementwise derivative) at the same dims.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from sympy import BlockMatrix, ImmutableMatrix, MatrixSymbol, Symbol, Trace
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.checker.network import choose_dims
from derive.core import truth
from derive.errors import DimsError, UnsupportedOperation

torch = pytest.importorskip("torch")

N, D, K = (Symbol(n, integer=True, positive=True) for n in "NDK")
X, B = MatrixSymbol("X", N, D), MatrixSymbol("B", N, K)
V1, V2 = MatrixSymbol("V", D - 1, 2), MatrixSymbol("V", D - 2, 2)
W, T = MatrixSymbol("W", D, 3), MatrixSymbol("T", N - 1, 3)
WB, y = MatrixSymbol("W", D + K, 1), MatrixSymbol("y", N, 1)
w3 = MatrixSymbol("w", 3, 1)


def _frobenius(A):
    return Trace(A.T * A)


# (name, loss, parameters, the same loss in torch, the dims the built-in check must pick: the smallest)
SLICES = [
    ("X[:, 2:]", _frobenius(X[:, 2:]), [X], lambda v: (v["X"][:, 2:] ** 2).sum(), {D: 3, N: 2}),
    ("X[1:, :]", derive.mse(X[1:, :] * W, T), [X, W],
     lambda v: ((v["X"][1:] @ v["W"] - v["T"]) ** 2).sum() / v["T"].shape[0], {D: 2, N: 3}),
    ("X[:, :D-1]", _frobenius(X[:, :D - 1] * V1), [X, V1],
     lambda v: ((v["X"][:, :-1] @ v["V"]) ** 2).sum(), {D: 2, N: 3}),
    ("X[1:, 1:D-1]", _frobenius(X[1:, 1:D - 1] * V2), [X, V2],
     lambda v: ((v["X"][1:, 1:-1] @ v["V"]) ** 2).sum(), {D: 3, N: 2}),
    ("X[:, 4:7]", derive.mse(X[:, 4:7] * w3, y), [X, w3],
     lambda v: ((v["X"][:, 4:7] @ v["w"] - v["y"]) ** 2).sum() / v["y"].shape[0], {D: 7, N: 2}),
    ("entry X[1, 3]", X[1, 3] * _frobenius(X), [X], lambda v: v["X"][1, 3] * (v["X"] ** 2).sum(), {D: 4, N: 2}),
    ("blocks [X, B] of symbolic widths", derive.mse(BlockMatrix([[X, B]]) * WB, y), [X, B, WB],
     lambda v: ((torch.cat([v["X"], v["B"]], dim=1) @ v["W"] - v["y"]) ** 2).sum() / v["y"].shape[0],
     {D: 2, K: 3, N: 4}),
]


def _values(loss, dims, rng) -> dict:
    return {s.name: rng.standard_normal(tuple(int(d.subs(dims)) for d in s.shape))
            for s in loss.atoms(MatrixSymbol)}


def _at(matrix, values) -> np.ndarray:
    """An explicit SymPy matrix of expressions in entries X[i, j], at ``values``: plain SymPy, no evaluator."""
    entries = {e: float(values[e.parent.name][int(e.i), int(e.j)]) for e in matrix.atoms(MatrixElement)}
    return np.array(matrix.xreplace(entries).evalf(), dtype=float)


@pytest.mark.parametrize("loss, params, torch_loss, smallest", [r[1:] for r in SLICES], ids=[r[0] for r in SLICES])
def test_slices_at_symbolic_dims_pass_the_check_at_the_smallest_dims_and_match_autograd(loss, params, torch_loss,
                                                                                     smallest):
    g = derive.gradients(loss, params)             # the built-in check runs and passes
    dims = g.numeric_check.dims
    assert dims == smallest
    values = _values(loss, dims, np.random.default_rng(0))
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    torch_loss(tensors).backward()
    for p in params:
        np.testing.assert_allclose(_at(g.explicit_gradient(p, dims), values), tensors[p.name].grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
    assert all(v.max_relative_error < 1e-9 for v in g.verify(dims, points=2))


@pytest.mark.parametrize("loss, params, torch_loss, smallest", [r[1:] for r in SLICES], ids=[r[0] for r in SLICES])
def test_the_checkers_default_dims_keep_slices_in_range_and_stay_distinct_odd_primes(loss, params, torch_loss,
                                                                                     smallest):
    dims = choose_dims(derive.gradients(loss, params, check=False).root)
    assert len(set(dims.values())) == len(dims) and all(v > 2 and v % 2 for v in dims.values())
    assert all(dims[s] >= smallest[s] for s in dims)       # every slice non-empty at the primes too
    assert 3 not in dims.values() or w3 not in params      # the fixed size 3 is avoided


def test_the_generated_codes_example_inputs_fit_the_slices():
    g = derive.gradients(derive.mse(X[:, 4:7] * w3, y), [X, w3])
    source = derive.to_numpy(g, "sliced")          # verifies against differences at its example inputs
    assert "7" in source


EMPTY = [
    ("verify", lambda g: g.verify({N: 2, D: 2})),
    ("elementwise", lambda g: g.elementwise(X, {N: 2, D: 2})),
    ("to_numpy", lambda g: derive.to_numpy(g, "sliced", dims={D: 2})),
    ("truth.Program", lambda g: truth.Program([g.loss], {"N": 2, "D": 2})),
]


@pytest.mark.parametrize("use", [r[1] for r in EMPTY], ids=[r[0] for r in EMPTY])
def test_dims_that_empty_a_slice_are_refused_naming_the_slice_the_dimension_and_the_value(use):
    g = derive.gradients(_frobenius(X[:, 2:]), [X])
    with pytest.raises(DimsError, match=r"the slice X\[:, 2:\] has D - 2 columns: D - 2 = 0 at D=2"):
        use(g)


def test_a_slice_ending_beyond_its_matrix_and_an_entry_outside_it_are_refused():
    g = derive.gradients(derive.mse(X[:, 4:7] * w3, y), [X, w3])
    with pytest.raises(DimsError, match=r"the slice X\[:, 4:7\] ends at column 7, beyond the D columns of X: "
                                        r"D - 7 = -2 at D=5"):
        g.verify({N: 2, D: 5})
    g = derive.gradients(X[1, 3] * _frobenius(X), [X])
    with pytest.raises(DimsError, match=r"the entry X\[1, 3\] needs column 3 of X's D: D - 3 = 0 at D=3"):
        g.elementwise(X, {N: 2, D: 3})


def test_slices_no_sizes_can_fit_are_refused_naming_one():
    loss = _frobenius(X[:, N:]) + _frobenius(X[D:, :])      # D > N and N > D
    with pytest.raises(DimsError, match=r"no sizes .*make every matrix of the network non-empty and in range: "
                                        r"the slice X\["):
        derive.gradients(loss, [X])


def test_what_sympy_raises_without_a_message_is_said(monkeypatch):
    # the dims check off, SymPy's IndexError from an empty slice reaches the evaluator: its message was blank
    evaluate_module = importlib.import_module("derive.core.truth.evaluate")   # truth.evaluate is a function
    monkeypatch.setattr(evaluate_module, "node_requirements", lambda node, **options: [])
    with pytest.raises(UnsupportedOperation, match=r"cannot evaluate MatrixSlice \(X\[:, 2:\]\) at dims D=2, N=2: "
                                                   r"SymPy raised IndexError without a message"):
        truth.Program([_frobenius(X[:, 2:])], {"N": 2, "D": 2})


def test_the_hvp_of_a_slice_at_symbolic_dims_passes_its_check_and_matches_autograd():
    V = MatrixSymbol("V", N, D)
    h = derive.gradients(Trace(derive.tanh(X[:, 2:]).T * derive.tanh(X[:, 2:])), [X]).hvp({X: V})   # checked
    dims = {N: 2, D: 3}
    values = _values(X + V, dims, np.random.default_rng(1))
    closed = _at(ImmutableMatrix(h[X].subs(dims).as_explicit()), values)
    _, product = torch.autograd.functional.hvp(lambda x: (torch.tanh(x[:, 2:]) ** 2).sum(),
                                               torch.tensor(values["X"]), torch.tensor(values["V"]))
    np.testing.assert_allclose(closed, product.numpy(), rtol=1e-9, atol=1e-12)


def test_a_negative_size_the_dims_check_did_not_catch_is_said_with_the_dims_given(monkeypatch):
    # the evaluator's own guard behind the dims check: a size below 0 was reported as "no concrete size"
    evaluate_module = importlib.import_module("derive.core.truth.evaluate")
    monkeypatch.setattr(evaluate_module, "node_requirements", lambda node, **options: [])
    short = MatrixSymbol("S", N - 3, 2)
    with pytest.raises(DimsError, match=r"the dimension N - 3 comes out as -1 \(negative\) with N = 2"):
        truth.Program([Trace(short.T * short)], {"N": 2})
