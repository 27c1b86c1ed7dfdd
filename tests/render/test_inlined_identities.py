"""An upstream gradient that is an identity (a trace's dL/dM = I, as in a weight decay tr(W^T W)) is
written into what reads it: the generated step and hvp multiply by no ``np.eye`` (``W @ I + W @ I.T``
folds to ``2 * W``), and their results are still torch autograd's (the independent truth)."""

from __future__ import annotations

import numpy as np
import pytest
from sympy import MatrixSymbol, Symbol, Trace

import derive
from derive.core.activations import tanh
from derive.core.losses import mse
from derive.render import module as codegen

from .test_module import assert_close, dims_of

N, D, H, C = (Symbol(s, integer=True, positive=True) for s in "NDHC")
X, W, W2, Y = MatrixSymbol("X", N, D), MatrixSymbol("W", D, H), MatrixSymbol("W2", H, C), MatrixSymbol("Y", N, C)
A = MatrixSymbol("A", D, D)
FIT = mse(tanh(X * W) * W2, Y)
LOSSES = {
    "weight decay": FIT + Trace(W.T * W),
    "scaled decay of both": FIT + 3 * Trace(W.T * W) + Trace(W2.T * W2) / 2,
    "a quadratic form": FIT + Trace(W.T * A * W),
    "decay through a transpose": FIT + Trace(W * W.T),
}


@pytest.fixture(scope="module", params=list(LOSSES))
def network(request):
    g = derive.gradients(LOSSES[request.param], [W, W2])
    source = derive.to_numpy(g, request.param, hvp=True)
    return request.param, g, source, codegen.load_module(source, request.param)


def test_no_identity_is_made_or_multiplied_by(network):
    _, _, source, _ = network
    assert "np.eye" not in source


def test_the_step_and_the_hvp_are_torch_autogradss(network):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    from ..evaluator import torch_hvp, torch_loss_and_grads

    name, g, _, module = network
    rng = np.random.default_rng(3)
    params, batch = module.example_inputs(rng)
    dims = dims_of(g, {**params, **batch})
    loss, grads = module.loss_and_grads(params, batch)
    torch_loss, torch_grads = torch_loss_and_grads(g.loss, params, batch, dims)
    assert_close(loss, torch_loss, what=f"{name} loss")
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    products = module.hvp(params, batch, directions)
    truth = torch_hvp(g.loss, params, batch, dims, directions)
    for key in params:
        assert_close(grads[key], torch_grads[key], what=f"{name} dL/d{key}")
        assert_close(products[key], truth[key], what=f"{name} (H V)_{key}")


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_the_framework_modules_make_no_identity_either(target):
    pytest.importorskip(target)
    g = derive.gradients(LOSSES["weight decay"], [W, W2])
    source = getattr(derive, f"to_{target}")(g, "decay", hvp=True)   # verified against autodiff before returned
    assert "eye(" not in source
