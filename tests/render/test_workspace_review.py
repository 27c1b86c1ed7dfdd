"""Review of the in-place sums (R = A @ V; R += H @ U) and the hvp's workspace: inputs their author did
not try, each against torch autograd (tests/evaluator.py), the independent truth."""

from __future__ import annotations

import numpy as np
import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol, Trace

import derive
from derive.core.activations import tanh
from derive.core.losses import mse
from derive.render import module as codegen

from ..evaluator import torch_hvp, torch_loss_and_grads
from .test_module import assert_close, dims_of

N, D, H, C = (Symbol(s, integer=True, positive=True) for s in "NDHC")
X, Y = MatrixSymbol("X", N, D), MatrixSymbol("Y", N, C)
W, W2, b, c = MatrixSymbol("W", D, H), MatrixSymbol("W2", H, C), MatrixSymbol("b", 1, H), MatrixSymbol("c", N, 1)
M, S = MatrixSymbol("M", D, D), MatrixSymbol("S", D, D)

NETWORKS = {
    # a broadcast row and a broadcast column added in place, after a product
    "column bias": (mse(tanh(X * W + OneMatrix(N, 1) * b + c * OneMatrix(1, H)) * W2, Y), [W, b, c, W2]),
    # (H V)_M = S^T V dZ + ... + dH V^T + V^T dH: the product's buffer is written before V is last read
    "square": (Trace(M * M) / 2 + Trace(M.T * S * M), [M]),
}


@pytest.mark.parametrize("key", list(NETWORKS))
def test_workspace_hvp_survives_new_sizes_subsets_and_handed_back_inputs(key):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    g = derive.gradients(*NETWORKS[key])
    module = codegen.load_module(derive.to_numpy(g, key, hvp=True, workspace=True), key)
    workspace, rng = module.Workspace(), np.random.default_rng(3)

    def check(params, batch, directions, what):
        truth = torch_hvp(g.loss, params, batch, dims_of(g, {**params, **batch}), directions)
        found = module.hvp(params, batch, directions, workspace=workspace)
        for name in params:
            assert_close(found[name], truth[name], what=f"{key} (H V)_{name}, {what}")
        return found

    sizes = [{"N": n} for n in (4, 1, 1, 6)] if "N" in module.DEFAULT_DIMS else [{}] * 4
    for dims in sizes:
        params, batch = module.example_inputs(rng, dims)
        for moving in (list(params)[:1], list(params), list(params)[1:] or list(params)):
            check(params, batch, {k: rng.standard_normal(np.shape(params[k])) for k in moving}, f"{dims} {moving}")
    found = check(params, batch, {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}, "before")
    kept = {k: v.copy() for k, v in found.items()}
    # the products handed back as the parameters: the workspace's own arrays read by forward and hvp
    truth = torch_hvp(g.loss, kept, batch, dims_of(g, {**kept, **batch}), kept)
    again = module.hvp(found, batch, found, workspace=workspace)
    for name in params:
        assert_close(again[name], truth[name], what=f"{key} (H V)_{name} at params = directions = products")


@pytest.mark.parametrize("decay", ["tr(W^T W)", "tr(W^T M W), M learnt"])
def test_float32_weights_on_float64_data_keep_the_data_terms_in_float64(decay):
    # a sum finished in place takes its first term's dtype: the data term (X^T dZ) must come first,
    # before the weights-only terms (2 W; M^T W + M W)
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    w, m = MatrixSymbol("W", D, C), MatrixSymbol("M", D, D)
    if decay == "tr(W^T W)":
        g = derive.gradients(mse(X * w, Y) + Trace(w.T * w), [w])
    else:
        g = derive.gradients(mse(X * w, Y) + Trace(w.T * m * w), [w, m])
    module = codegen.load_module(derive.to_numpy(g, "decay"), "decay")
    params, batch = module.example_inputs(np.random.default_rng(0))
    params = {k: v.astype(np.float32) for k, v in params.items()}
    _, grads = module.loss_and_grads(params, batch)
    _, truth = torch_loss_and_grads(g.loss, params, batch, dims_of(g, {**params, **batch}))
    # the sum promotes to float64 (X is float64), as the single expression did; the weights-only
    # products (M^T W) are float32 products in both, so only 2 W's sum is float64-exact
    assert grads["W"].dtype == np.float64
    assert_close(grads["W"], truth["W"], rtol=1e-12 if decay == "tr(W^T W)" else 1e-6, what="dL/dW")
