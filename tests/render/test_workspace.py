"""The generated step's opt-in workspace (``to_numpy(..., workspace=True)``): given one, the step gives the
gradients PyTorch autograd gives (the independent truth), writes each call into the previous call's
arrays (so its results alias them, as documented), makes them again when the shapes or dtypes change,
and a workspace step that writes one buffer twice is refused by the verification."""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest

import derive
from derive.errors import CodegenError
from derive.examples import catalogue, layers
from derive.render import module as codegen

from ..evaluator import torch_loss_and_grads
from .test_module import assert_close, dims_of, inputs

EXAMPLES = catalogue()
NAMES = list(EXAMPLES)
# Big enough that GELU's helpers work in blocks on threads, and that the activations outweigh the
# arrays a step still allocates with a workspace (the N x C softmax, GELU's per-block temporaries).
BIG = {"N": 4096, "H": 256}


@functools.cache
def generated(name: str, hvp: bool = False):
    """(derivation, source, module) of a built-in example with a workspace (and ``hvp``), generated and
    verified once."""
    g = EXAMPLES[name].derive()
    source = derive.to_numpy(g, name, workspace=True, hvp=hvp)
    return g, source, codegen.load_module(source, name)


@pytest.mark.parametrize("name", NAMES)
def test_the_step_given_a_workspace_matches_autograd(name):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    g, _, module = generated(name)
    workspace = module.Workspace()
    for seed in (0, 1, 2):  # one shape: the second and third calls write into the first one's arrays
        params, batch = inputs(module, seed)
        loss, grads = module.loss_and_grads(params, batch, workspace=workspace)
        torch_loss, torch_grads = torch_loss_and_grads(g.loss, params, batch, dims_of(g, {**params, **batch}))
        assert_close(loss, torch_loss, what=f"{name} loss, call {seed + 1}")
        for key in params:
            assert_close(grads[key], torch_grads[key], what=f"{name} dL/d{key}, call {seed + 1}")


@pytest.mark.parametrize("name", ["mlp3_relu", "mlp3_gelu"])
def test_a_second_call_writes_into_the_first_calls_arrays(name):
    _, _, module = generated(name)
    workspace = module.Workspace()
    params, batch = inputs(module, 0, BIG)
    _, first = module.loss_and_grads(params, batch, workspace=workspace)
    kept = {key: grad.copy() for key, grad in first.items()}
    _, cache = module.forward(params, batch, workspace)
    params, batch = inputs(module, 1, BIG)
    _, second = module.loss_and_grads(params, batch, workspace=workspace)
    _, plain = module.loss_and_grads(params, batch)
    for key in ("W1", "W2", "W3"):
        assert second[key] is first[key], f"d{key} is a new array"
        np.testing.assert_array_equal(first[key], plain[key])  # the first call's result, overwritten
        assert not np.array_equal(kept[key], plain[key])
    assert module.forward(params, batch, workspace)[1]["H1"] is cache["H1"]
    # with every activation and gradient reused, a call allocates less than one activation's array
    # (the plain step allocates a dozen of them)
    allocated = _peak(lambda: module.loss_and_grads(params, batch, workspace=workspace))
    activation = cache["H1"].nbytes
    assert allocated < activation < _peak(lambda: module.loss_and_grads(params, batch)) / 6, (allocated, activation)


def _peak(step) -> int:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        step()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("first", "then"), [
    ({"N": 6}, {"N": 9}),
    ({"N": 6, "dtype": np.float32}, {"N": 6, "dtype": np.float64}),
], ids=["batch-size", "dtype"])
def test_new_shapes_or_dtypes_get_new_arrays(first, then):
    _, _, module = generated("mlp3_gelu")
    workspace = module.Workspace()
    results = []
    for case in (first, then):
        params, batch = (
            {k: v.astype(case.get("dtype", np.float64)) for k, v in arrays.items()}
            for arrays in inputs(module, len(results), {"N": case["N"]}))
        loss, grads = module.loss_and_grads(params, batch, workspace=workspace)
        plain_loss, plain = module.loss_and_grads(params, batch)
        assert float(loss) == pytest.approx(float(plain_loss), rel=1e-12)
        for key in params:
            assert grads[key].dtype == params[key].dtype
            np.testing.assert_allclose(grads[key], plain[key], rtol=1e-12, atol=0)
        results.append(grads)
    assert results[1]["W1"] is not results[0]["W1"]


def test_without_the_option_the_module_is_as_before():
    g = EXAMPLES["mlp3_gelu"].derive()
    plain = derive.to_numpy(g, "mlp3_gelu")
    assert "workspace=" not in plain and "class Workspace" not in plain and "ws[" not in plain
    assert "def loss_and_grads(params, batch, workspace=None):" in generated("mlp3_gelu")[1]


def test_the_verification_refuses_a_workspace_step_that_writes_one_buffer_twice():
    _, source, _ = generated("mlp3_gelu")
    assert source.count("np.matmul(X, W1, out=ws.get('Z1'))") == 1
    # a key mixed up: from the second call on, Z1 is made in H1's array, and gelu(Z1) then overwrites
    # its own input; the first call (and every call without a workspace) is right
    broken = source.replace("np.matmul(X, W1, out=ws.get('Z1'))", "np.matmul(X, W1, out=ws.get('H1'))")
    module = codegen.load_module(broken, "broken")
    assert codegen.verify_module(broken.replace("class Workspace", "class Unused"), "broken") < 1e-6
    workspace = module.Workspace()
    for seed in (0, 1):
        params, batch = inputs(module, seed)
        right = module.loss_and_grads(params, batch)[0]
        assert (module.loss_and_grads(params, batch, workspace=workspace)[0] == right) == (seed == 0)
    with pytest.raises(CodegenError, match="given a workspace gives"):
        codegen.verify_module(broken, "broken")


def test_a_layer_module_has_no_workspace():
    example = next(iter(layers().values()))
    with pytest.raises(CodegenError, match=r"layer .*workspace"):
        derive.to_numpy(example.derive(), example.name, workspace=True)


def test_one_workspace_handed_to_two_networks_gives_each_its_own_arrays():
    _, _, relu = generated("mlp3_relu")
    _, _, gelu = generated("mlp3_gelu")
    workspace = relu.Workspace()
    params, batch = inputs(gelu, 0)
    for _ in range(2):
        found = {m: m.loss_and_grads(params, batch, workspace=workspace) for m in (relu, gelu)}
    for module, (loss, grads) in found.items():
        plain_loss, plain = module.loss_and_grads(params, batch)
        assert float(loss) == float(plain_loss)
        assert all(np.array_equal(grads[k], plain[k]) for k in plain)
    assert found[relu][1]["W1"] is not found[gelu][1]["W1"]


# --- hvp given a workspace (to_numpy(..., hvp=True, workspace=True)) -------------------------------

HVP_NETWORKS = ["seed_000_bce", "seed_003_mlp_column", "mlp3_gelu", "mlp3_tanh", "residual_block"]


@pytest.mark.parametrize("name", HVP_NETWORKS)
def test_the_hvp_given_a_workspace_matches_autograd(name):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    from ..evaluator import torch_hvp

    g, _, module = generated(name, hvp=True)
    workspace = module.Workspace()
    rng = np.random.default_rng(5)
    for call in range(3):  # one shape: the second and third calls write into the first one's arrays
        params, batch = module.example_inputs(rng)
        directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        products = module.hvp(params, batch, directions, workspace=workspace)
        truth = torch_hvp(g.loss, params, batch, dims_of(g, {**params, **batch}), directions)
        for key in params:
            assert_close(products[key], truth[key], what=f"{name} (H V)_{key}, call {call + 1}")


def test_a_second_hvp_writes_into_the_first_ones_arrays():
    _, source, module = generated("mlp3_gelu", hvp=True)
    assert "def hvp(params, batch, directions, workspace=None):" in source
    workspace = module.Workspace()
    rng = np.random.default_rng(0)
    params, batch = inputs(module, 0, BIG)
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    first = module.hvp(params, batch, directions, workspace=workspace)
    kept = {key: product.copy() for key, product in first.items()}
    moved = {k: 2 * v for k, v in directions.items()}
    second = module.hvp(params, batch, moved, workspace=workspace)
    plain = module.hvp(params, batch, moved)
    for key in ("W1", "W2", "W3"):
        assert second[key] is first[key], f"(H V)_{key} is a new array"
        np.testing.assert_allclose(second[key], plain[key], rtol=1e-12, atol=0)
        np.testing.assert_allclose(kept[key], plain[key] / 2, rtol=1e-10, atol=1e-300)  # linear in V
    # the tangents and products reused: a call allocates a fraction of what one without does
    assert _peak(lambda: module.hvp(params, batch, moved, workspace=workspace)) < _peak(
        lambda: module.hvp(params, batch, moved)) / 2


def test_the_verification_refuses_a_workspace_hvp_that_writes_one_buffer_twice():
    _, source, _ = generated("mlp3_gelu", hvp=True)
    assert source.count("out=ws.get('R_H1')") == 1
    # from the second call on R_H1 is made in R_H2's array, and R_H2 then overwrites it while Hv_W2
    # still reads R_H1; the first call (and every call without a workspace) is right
    broken = source.replace("out=ws.get('R_H1')", "out=ws.get('R_H2')")
    with pytest.raises(CodegenError, match="given a workspace gives the hvp of"):
        codegen.verify_module(broken, "broken")


def test_without_a_workspace_the_hvp_takes_none():
    source = derive.to_numpy(EXAMPLES["mlp3_gelu"].derive(), "mlp3_gelu", hvp=True)
    assert "def hvp(params, batch, directions):" in source and "ws[" not in source


def test_products_handed_back_as_directions_are_read_before_they_are_overwritten():
    # power iteration, v <- H v, hands each call's products (the workspace's arrays) back as directions;
    # with a quadratic form tr(W^T A W), (H V)_W reads V_W after it has begun to write (H V)_W
    from sympy import MatrixSymbol, Symbol, Trace

    from derive.core.activations import tanh
    from derive.core.losses import mse

    n, d, h, c = (Symbol(s, integer=True, positive=True) for s in "NDHC")
    x, w, w2, y = MatrixSymbol("X", n, d), MatrixSymbol("W", d, h), MatrixSymbol("W2", h, c), MatrixSymbol("Y", n, c)
    a = MatrixSymbol("A", d, d)
    g = derive.gradients(mse(tanh(x * w) * w2, y) + Trace(w.T * a * w) + Trace(w2.T * w2), [w, w2])
    source = derive.to_numpy(g, "decay", hvp=True, workspace=True)
    assert source.index("out=ws.get('Hv_W')") < source.index("Hv_W += A @ V_W")
    module = codegen.load_module(source, "decay")
    workspace = module.Workspace()
    params, batch = inputs(module, 0)
    v = module.hvp(params, batch, {k: np.ones_like(p) for k, p in params.items()}, workspace=workspace)
    for _ in range(3):
        expected = module.hvp(params, batch, {k: a.copy() for k, a in v.items()})
        v = module.hvp(params, batch, v, workspace=workspace)
        for key in params:
            np.testing.assert_allclose(v[key], expected[key], rtol=1e-12, atol=0)


def test_a_workspace_hvp_with_scalar_tangents_matches_autograd():
    # det and trace make 1 x 1 (or scalar) tangents: no buffer is kept for a scalar
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    from sympy import Determinant, Inverse, MatrixSymbol, Symbol, Trace, log

    from ..evaluator import torch_hvp

    d = Symbol("D", integer=True, positive=True)
    a, s = MatrixSymbol("A", d, d), MatrixSymbol("S", d, d)
    g = derive.gradients(-log(Determinant(a)) + Trace(Inverse(a) * s) + Determinant(a) ** 2, [a])
    module = codegen.load_module(derive.to_numpy(g, "logdet", hvp=True, workspace=True), "logdet")
    workspace = module.Workspace()
    rng = np.random.default_rng(2)
    for call in range(3):
        params, batch = module.example_inputs(rng)
        directions = {"A": rng.standard_normal(params["A"].shape)}
        products = module.hvp(params, batch, directions, workspace=workspace)
        truth = torch_hvp(g.loss, params, batch, dims_of(g, {**params, **batch}), directions)
        assert_close(products["A"], truth["A"], what=f"(H V)_A, call {call + 1}")
