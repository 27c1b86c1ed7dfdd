"""derive.to_jax: every built-in layer and network as a jax.custom_vjp function, against jax.vjp of
independent re-implementations (tests/layer_references.py) and the torch oracle (tests/evaluator.py),
check_grads in float64, float32 kept, under jax.jit and jax.vmap, at another batch size."""

import numpy as np
import pytest

import derive
from derive.examples import catalogue, layers
from derive.render.module import load_module

from ..evaluator import torch_loss_and_grads
from ..layer_references import WRONG_SHAPES, draw, jax_reference, named_layer

jax = pytest.importorskip("jax")
jnp = jax.numpy

LAYERS = layers()
NETWORKS = catalogue()
SIZES = {"N": 5, "D": 3}


@pytest.fixture(scope="module")
def modules():
    out = {name: load_module(derive.to_jax(example.derive(), name)) for name, example in LAYERS.items()}
    out.update({name: load_module(derive.to_jax(example.derive(), name)) for name, example in NETWORKS.items()})
    return out


def _values(name, seed):
    g = LAYERS[name].derive()
    return g, draw([*g.arguments, g.upstream], SIZES, seed=seed)


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_matches_jax_vjp_of_an_independent_layer(name, modules):
    module = modules[name]
    g, values = _values(name, seed=3)
    with jax.enable_x64(True):
        args = [jnp.asarray(values[k]) for k in module.ARGS]
        upstream = jnp.asarray(values[g.upstream.name])
        output, pullback = jax.vjp(module.fn, *args)
        reference, reference_pullback = jax.vjp(lambda *a: jax_reference(name)(**dict(zip(module.ARGS, a))), *args)
        assert np.allclose(output, reference, rtol=1e-10, atol=1e-12)
        got, want = pullback(upstream), reference_pullback(upstream)
        for key, a, b in zip(module.ARGS, got, want):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-11), key


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_passes_check_grads_under_jit(name, modules):
    from jax.test_util import check_grads
    module = modules[name]
    _, values = _values(name, seed=4)
    with jax.enable_x64(True):
        args = [jnp.asarray(values[k]) for k in module.ARGS]
        check_grads(jax.jit(module.fn), args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        assert np.allclose(jax.jit(module.fn)(*args), module.fn(*args), rtol=1e-12)


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_vmaps_over_a_leading_batch_of_inputs(name, modules):
    module = modules[name]
    g, values = _values(name, seed=5)
    inputs = {s.name for s in LAYERS[name].inputs}
    rng = np.random.default_rng(6)
    with jax.enable_x64(True):
        args = [jnp.asarray(np.stack([values[k], rng.standard_normal(values[k].shape)]) if k in inputs else values[k])
                for k in module.ARGS]
        axes = tuple(0 if k in inputs else None for k in module.ARGS)
        upstream = jnp.asarray(np.stack([values[g.upstream.name]] * 2))

        def total(fn):
            return lambda *a: jnp.sum(upstream * jax.vmap(fn, in_axes=axes)(*a))

        reference = lambda *a: jax_reference(name)(**dict(zip(module.ARGS, a)))
        got = jax.jit(jax.grad(total(module.fn), argnums=tuple(range(len(args)))))(*args)
        want = jax.grad(total(reference), argnums=tuple(range(len(args))))(*args)
        for key, a, b in zip(module.ARGS, got, want):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-11), key


@pytest.mark.parametrize("name, key, shape, message", WRONG_SHAPES)
def test_arguments_of_the_wrong_shape_are_refused_by_name(name, key, shape, message, modules):
    module = modules[name]
    args, _ = module.example_inputs(np.random.default_rng(0), dims=SIZES)
    wrong = [np.zeros(shape) if k == key else a for k, a in zip(module.ARGS, args)]
    for fn in (module.fn, jax.jit(module.fn)):   # traced shapes are static: jit checks them too
        with pytest.raises(ValueError) as caught:
            fn(*wrong)
        assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:   # and vmap checks one example's
        jax.vmap(module.fn, in_axes=tuple(0 if k == key else None for k in module.ARGS))(
            *[np.stack([a, a]) if k == key else a for k, a in zip(module.ARGS, wrong)])
    assert str(caught.value) == message
    assert module.fn(*args).shape[0] == 5   # the right shapes, at another batch size, pass


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_stays_float32(name, modules):
    module = modules[name]
    g, values = _values(name, seed=7)
    args = [jnp.asarray(values[k], dtype=jnp.float32) for k in module.ARGS]
    output, pullback = jax.vjp(module.fn, *args)
    grads = pullback(jnp.asarray(values[g.upstream.name], dtype=jnp.float32))
    assert output.dtype == jnp.float32 and all(a.dtype == jnp.float32 for a in grads)



# names the generated JAX module uses itself (its imports, the sizes its backward rule reads, its
# residuals) given to an input, a parameter or a size: each is mangled, and the module is right,
# against jax.vjp of the layer written in JAX
OWN_NAMES = [(name, role) for name in ("jnp", "jax", "np", "sizes", "residuals") for role in ("input", "parameter", "size")]


@pytest.mark.parametrize("name, role", OWN_NAMES)
def test_names_the_module_uses_itself_are_mangled(name, role):
    g, batch = named_layer(name, role)
    module = load_module(derive.to_jax(g, "named"))
    values = draw([*g.arguments, g.upstream], {batch: 5}, seed=2)
    with jax.enable_x64(True):
        args = [jnp.asarray(values[k]) for k in module.ARGS]
        upstream = jnp.asarray(values[g.upstream.name])
        reference = lambda X, W, Q: jax.nn.sigmoid(X @ W) @ Q + jax.nn.gelu(X @ W, approximate=False) + 1
        got, want = jax.vjp(module.fn, *args)[1](upstream), jax.vjp(reference, *args)[1](upstream)
        for key, a, b in zip(module.ARGS, got, want):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-11), key

@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_matches_the_torch_oracle(name, modules):
    pytest.importorskip("torch")
    module = modules[name]
    example = NETWORKS[name]
    args, _ = module.example_inputs(np.random.default_rng(8), dims={"N": 5})
    wrt = {p.name for p in example.wrt}
    positions = [k for k, key in enumerate(module.ARGS) if key in wrt]
    with jax.enable_x64(True):
        arrays = [jnp.asarray(a) for a in args]
        loss, grads = jax.value_and_grad(module.fn, argnums=tuple(positions))(*arrays)
    params = {module.ARGS[k]: args[k] for k in positions}
    batch = {key: a for key, a in zip(module.ARGS, args) if key not in params}
    dims = {d: 5 if str(d) == "N" else module.DEFAULT_DIMS[str(d)] for s in example.loss.free_symbols
            for d in getattr(s, "shape", ()) if not getattr(d, "is_Integer", True)}
    want_loss, want = torch_loss_and_grads(example.loss, params, batch, dims)
    assert float(loss) == pytest.approx(want_loss, rel=1e-10)
    for k, grad in zip(positions, grads):
        assert np.allclose(grad, want[module.ARGS[k]], rtol=1e-9, atol=1e-12), module.ARGS[k]


@pytest.mark.parametrize("name", ["seed_000_bce", "layer_gelu_dense"])
def test_the_module_checks_itself(name, modules):
    modules[name].check_gradients(seed=9)   # raises on a mismatch


def test_targets_declared_to_sum_to_one_are_checked_where_concrete(modules):
    module = modules["seed_003_mlp_column"]
    args, _ = module.example_inputs(np.random.default_rng(0))
    bad = [2 * a if k == "y" else a for k, a in zip(module.ARGS, args)]
    with pytest.raises(ValueError, match="declared to sum to 1"):
        module.fn(*bad)
    assert np.isfinite(jax.jit(module.fn)(*bad))   # traced under jit: not checked, as the module says
