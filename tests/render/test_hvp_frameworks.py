"""``to_torch(g, name, hvp=True)`` and ``to_jax(g, name, hvp=True)``: the generated ``hvp`` against
``torch.func.jvp`` of ``torch.func.grad`` and ``jax.jvp`` of ``jax.grad`` of the loss re-implemented by the
test evaluator (tests/evaluator.py: torch and jax.numpy from the textbook definitions, no derive printer),
at the module's example inputs and random directions; a wrong hvp is refused by to_torch's check."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import derive
from derive.errors import CodegenError
from derive.render import frameworks
from derive.render.module import load_module

from ..evaluator import JaxOps, TorchOps, evaluate
from .test_hvp import BUILT_IN, NETWORKS, dims_of

# every activation with a second derivative of its own, softmax, layer norm, log-det, the tied weight
KEYS = ["softmax regression", "layer norm", "log-det and inverse", "tied weights", "activation elu",
        "activation gelu", "activation silu", "activation softplus", "seed_000_bce", "mlp3_relu"]
JAX_KEYS = ["softmax regression", "layer norm", "activation elu", "activation gelu", "mlp3_relu"]   # JAX runs op by op: slow


@functools.cache
def derivation(key: str):
    if key in BUILT_IN:
        return derive.examples.catalogue()[key].derive()
    _, loss, wrt = next(row for row in NETWORKS if row[0] == key)
    return derive.gradients(loss, wrt)


def split(module, args) -> tuple[dict, dict]:
    values = dict(zip(module.ARGS, (np.asarray(a, dtype=float) for a in args)))
    params = {k: v for k, v in values.items() if k in module.PARAMS}
    return params, {k: v for k, v in values.items() if k not in params}


def assert_close(got: dict, want: dict, key: str) -> None:
    for k, value in want.items():
        value, product = np.asarray(value, dtype=float), np.asarray(got[k], dtype=float)
        assert product.shape == value.shape
        scale = max(1.0, float(np.max(np.abs(value))))
        assert float(np.max(np.abs(product - value))) / scale < 1e-9, f"(H V)_{k} of {key}:\n{product}\nvs\n{value}"


@pytest.mark.parametrize("key", KEYS)
def test_torch_hvp_equals_torch_func_jvp_of_grad(key):
    torch = pytest.importorskip("torch")
    g = derivation(key)
    module = load_module(derive.to_torch(g, key, hvp=True))
    args, _ = module.example_inputs(torch.Generator().manual_seed(2))
    params, batch = split(module, args)
    dims = dims_of(g, {**params, **batch})
    rng = np.random.default_rng(3)
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    tensors = lambda arrays: {k: torch.tensor(v, dtype=torch.float64) for k, v in arrays.items()}
    ops = TorchOps()

    def loss(p):
        return evaluate(g.loss, {**tensors(batch), **p}, dims, ops).reshape(())

    _, want = torch.func.jvp(torch.func.grad(loss), (tensors(params),), (tensors(directions),))
    got = module.hvp(tensors(params), tensors(batch), tensors(directions))
    assert_close({k: v.numpy() for k, v in got.items()}, {k: v.numpy() for k, v in want.items()}, key)


@pytest.mark.parametrize("key", JAX_KEYS)
def test_jax_hvp_equals_jax_jvp_of_grad(key):
    jax = pytest.importorskip("jax")
    g = derivation(key)
    module = load_module(derive.to_jax(g, key, hvp=True))
    params, batch = split(module, module.example_inputs(np.random.default_rng(2))[0])
    dims = dims_of(g, {**params, **batch})
    rng = np.random.default_rng(3)
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    with jax.enable_x64(True):
        arrays = lambda values: {k: jax.numpy.asarray(v) for k, v in values.items()}
        ops = JaxOps()

        def loss(p):
            return jax.numpy.reshape(evaluate(g.loss, {**arrays(batch), **p}, dims, ops), ())

        _, want = jax.jvp(jax.grad(loss), (arrays(params),), (arrays(directions),))
        got = jax.jit(module.hvp)(arrays(params), arrays(batch), arrays(directions))
        assert_close(got, want, key)


def test_a_wrong_torch_hvp_is_refused(monkeypatch):
    pytest.importorskip("torch")
    real = frameworks.render_template

    def broken(name, **context):   # one parameter's product 1% off, the gradient right
        source = real(name, **context)
        return source.replace("return {'w1': Hv_w1", "return {'w1': 1.01 * Hv_w1")

    monkeypatch.setattr(frameworks, "render_template", broken)
    with pytest.raises(CodegenError, match="hvp of w1"):
        derive.to_torch(derivation("seed_000_bce"), "seed_000_bce", hvp=True)


@pytest.mark.parametrize("target", ["to_torch", "to_jax"])
def test_a_layer_is_refused_with_hvp(target):
    from .test_hvp import W, X
    layer = derive.vjp(derive.tanh(X * W), inputs=[X], params=[W])
    with pytest.raises(CodegenError, match="scalar loss"):
        getattr(derive, target)(layer, "tanh_layer", hvp=True)
