"""Generated Hessian-vector products (``to_numpy(g, name, hvp=True)``) against independent truths.

Every row's generated ``hvp`` must equal ``torch.autograd.functional.hvp`` of the loss evaluated with
torch ops by the test evaluator (tests/evaluator.py, which reads no rule and no printer), at the module's
example inputs and random directions, with some parameters left out (direction 0). The module's own
check is shown to refuse a wrong hvp: each of its two checks (differences of the module's gradient, and
second differences of the declared loss) on its own.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sympy import Determinant, HadamardPower, Inverse, MatrixSymbol, OneMatrix, Symbol, Trace, log

import derive
from derive.core.activations import elu, gelu, leaky_relu, relu, sigmoid, silu, softplus, tanh
from derive.core.losses import bce, cross_entropy, mse
from derive.core.truth import Program
from derive.errors import CodegenError
from derive.examples import catalogue
from derive.examples.layer_norm import layer_norm
from derive.render import hvp as second
from derive.render import module as codegen

from ..evaluator import torch_hvp

N, D, H, C = (Symbol(s, integer=True, positive=True) for s in ("N", "D", "H", "C"))
X, y = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1)
w, W, b = MatrixSymbol("w", D, 1), MatrixSymbol("W", D, H), MatrixSymbol("b", 1, H)
W2, Y, Q = MatrixSymbol("W2", H, C), MatrixSymbol("Y", N, C), MatrixSymbol("Q", N, C)
A, S = MatrixSymbol("A", D, D), MatrixSymbol("S", D, D)
ones = OneMatrix(N, 1)
LAYER_NORM = layer_norm()

# (id, loss, parameters); the built-in networks follow
NETWORKS = [
    ("logistic regression", bce(sigmoid(X * w), y), [w]),
    ("softmax regression", cross_entropy(X * W * W2, Q, targets_sum_to_one=True), [W, W2]),
    ("layer norm", mse(LAYER_NORM.output, MatrixSymbol("T", N, D)), list(LAYER_NORM.params)),
    ("log-det and inverse", -log(Determinant(A)) + Trace(Inverse(A) * S), [A]),
    ("determinant", Determinant(A) ** 2, [A]),
    ("tied weights", mse(sigmoid(X * W) * W.T, X), [W]),
    ("Hadamard square", mse(HadamardPower(X * W, 2) * W2, Y), [W, W2]),
] + [
    (f"activation {f.__name__}", mse(f(X * W + ones * b) * W2, Y), [W, b, W2])
    for f in (relu, leaky_relu, elu, tanh, gelu, silu, softplus)
]
BUILT_IN = ["seed_000_bce", "seed_003_mlp_column", "mlp3_relu", "mlp3_gelu", "residual_block"]
IDS = [row[0] for row in NETWORKS] + BUILT_IN


@functools.cache
def generated(key: str):
    """(derivation, module) of a row or a built-in network, generated with hvp and verified once."""
    if key in BUILT_IN:
        g = catalogue()[key].derive()
    else:
        _, loss, wrt = next(row for row in NETWORKS if row[0] == key)
        g = derive.gradients(loss, wrt)
    return g, codegen.load_module(derive.to_numpy(g, key, hvp=True), key)


def dims_of(g, arrays: dict) -> dict:
    dims = {}
    for m in g.inputs:
        for dim, size in zip(m.shape, np.shape(arrays[m.name])):
            if isinstance(dim, Symbol):
                dims[dim] = size
    return dims


@pytest.mark.parametrize("key", IDS)
def test_generated_hvp_equals_torch_autograd_hvp(key):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    g, module = generated(key)
    rng = np.random.default_rng(1)
    params, batch = module.example_inputs(rng)
    for moving in (list(params), list(params)[:1]):   # every parameter; then one, the others left out
        directions = {k: rng.standard_normal(params[k].shape) for k in moving}
        products = module.hvp(params, batch, directions)
        truth = torch_hvp(g.loss, params, batch, dims_of(g, {**params, **batch}), directions)
        for k in params:
            got, want = products[k], truth[k]
            assert got.shape == want.shape
            scale = max(1.0, float(np.max(np.abs(want))))
            assert float(np.max(np.abs(got - want))) / scale < 1e-8, f"(H V)_{k} of {key}:\n{got}\nvs\n{want}"


def test_hvp_keeps_float32():
    _, module = generated("mlp3_relu")
    rng = np.random.default_rng(0)
    params, batch = module.example_inputs(rng)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    batch = {k: v.astype(np.float32) for k, v in batch.items()}
    products = module.hvp(params, batch, {k: np.ones_like(v) for k, v in params.items()})
    assert all(p.dtype == np.float32 for p in products.values())


def test_hvp_refuses_a_direction_for_no_parameter():
    _, module = generated("seed_000_bce")
    params, batch = module.example_inputs(np.random.default_rng(0))
    with pytest.raises(ValueError, match="not parameters"):
        module.hvp(params, batch, {"X": np.ones_like(batch["X"])})


def test_module_runs_its_own_hvp_check():
    _, module = generated("mlp3_gelu")
    assert module.check_hvp() < 1e-5


def test_a_layer_is_refused_with_hvp():
    layer = derive.vjp(tanh(X * W), inputs=[X], params=[W])
    with pytest.raises(CodegenError, match="scalar loss"):
        derive.to_numpy(layer, "tanh_layer", hvp=True)


# --- a wrong hvp is refused, by each of the two checks ------------------------------------------

def wrong(key: str, factor: float = 1.01):
    """(derivation, a module whose hvp is off by ``factor`` in one parameter's product, gradient right)."""
    g, _ = generated(key)
    source = derive.to_numpy(g, key, hvp=True)
    marker = "    return {\n        'w1': Hv_w1,"
    assert marker in source
    broken = source.replace(marker, f"    Hv_w1 = Hv_w1 * {factor!r}\n" + marker)
    return g, codegen.load_module(broken, key)


def test_a_wrong_hvp_is_refused_by_to_numpy(monkeypatch):
    g, _ = generated("seed_000_bce")
    real = codegen.render
    monkeypatch.setattr(codegen, "render", lambda plan: real(plan).replace(
        "    return {\n        'w1': Hv_w1,", "    Hv_w1 = Hv_w1 * 1.01\n    return {\n        'w1': Hv_w1,"))
    with pytest.raises(CodegenError, match="hvp of w1"):
        derive.to_numpy(g, "seed_000_bce", hvp=True)


def test_a_wrong_hvp_is_refused_against_the_modules_gradient():
    _, module = wrong("seed_000_bce")
    params, batch = module.example_inputs(np.random.default_rng(0))
    directions = {k: np.random.default_rng(1).standard_normal(v.shape) for k, v in params.items()}
    products = second.run_hvp(module, "net", params, batch, directions)
    with pytest.raises(CodegenError, match="module's own gradient"):
        second.check_against_gradient(module.loss_and_grads, "net", params, batch, directions, products)


def test_a_wrong_hvp_is_refused_against_the_declared_loss():
    g, module = wrong("seed_000_bce")
    params, batch = module.example_inputs(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    products = second.run_hvp(module, "net", params, batch, directions)
    with pytest.raises(CodegenError, match="declared loss"):
        second.check_against_truth(Program([g.loss], module.DEFAULT_DIMS), "net", params, batch, directions,
                                   products, rng)


def test_a_right_hvp_passes_both_checks():
    g, module = generated("seed_000_bce")
    assert second.verify_hvp(module, "net", g.loss) < 1e-6


@pytest.mark.parametrize("target", ["to_numpy", "to_torch", "to_jax"])
def test_hvp_of_a_layer_is_refused_saying_why(target):
    """A layer (derive.vjp) has no scalar loss whose Hessian an hvp would apply."""
    if target != "to_numpy":
        pytest.importorskip(target[3:])
    n = Symbol("N", integer=True, positive=True)
    x, w = MatrixSymbol("X", n, 3), MatrixSymbol("W", 3, 2)
    layer = derive.vjp(tanh(x * w), [x], [w])
    with pytest.raises(CodegenError, match=r"tanh_layer is a layer \(derive.vjp\): hvp=True needs a scalar loss"):
        getattr(derive, target)(layer, "tanh_layer", hvp=True)


def test_the_gelu_hvp_makes_each_layers_slopes_once():
    # f'(Z) and f''(Z) of each layer in one gelu_slopes call from the forward's GELU(Z), read by name: no
    # erf or exp again in the tangent pass (the values are test_generated_hvp_equals_torch_autograd_hvp's)
    source = derive.to_numpy(catalogue()["mlp3_gelu"].derive(), "mlp3_gelu", hvp=True)
    body = source[source.index("def hvp("):source.index("def check_hvp(")]
    assert body.count("= gelu_slopes(") == 2, body
    assert "gelu_slopes(Z1, value=H1)" in body and "gelu_slopes(Z2, value=H2)" in body
    assert "gelu_prime(" not in body and "np.exp(" not in body
