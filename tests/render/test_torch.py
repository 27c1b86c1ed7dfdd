"""derive.to_torch: every built-in layer and network as a torch.autograd.Function, against torch
autograd of independent re-implementations (tests/layer_references.py for the layers, the torch
oracle of tests/evaluator.py for the networks), gradcheck in float64, float32 kept, another batch size
than the one derived at, CUDA where there is one, and a sample of the property networks."""

import numpy as np
import pytest
from hypothesis import example, given, settings

import derive
from derive.errors import CodegenError
from derive.examples import catalogue, layers
from derive.render.module import load_module

from ..evaluator import torch_loss_and_grads
from ..layer_references import WRONG_SHAPES, draw, named_layer, torch_reference
from ..networks import Extra, Layer, Network, networks

torch = pytest.importorskip("torch")

LAYERS = layers()
NETWORKS = catalogue()
SIZES = {"N": 5, "D": 3}     # not the default dims of the modules (N = 4) nor the layers' own (N = 2)


@pytest.fixture(scope="module")
def modules():
    """Each built-in layer's and network's torch module, generated (and so verified) once."""
    out = {name: load_module(derive.to_torch(example.derive(), name)) for name, example in LAYERS.items()}
    out.update({name: load_module(derive.to_torch(example.derive(), name)) for name, example in NETWORKS.items()})
    return out


def _layer_case(name, modules, dtype=torch.float64, seed=3):
    g = LAYERS[name].derive()
    values = draw([*g.arguments, g.upstream], SIZES, seed=seed)
    module = modules[name]
    tensors = [torch.tensor(values[k], dtype=dtype, requires_grad=True) for k in module.ARGS]
    upstream = torch.tensor(values[g.upstream.name], dtype=dtype)
    return module, tensors, upstream


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_matches_autograd_of_an_independent_layer(name, modules):
    module, tensors, upstream = _layer_case(name, modules)
    output = module.Function.apply(*tensors)
    grads = torch.autograd.grad(output, tensors, upstream)
    reference_inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
    reference = torch_reference(name)(**dict(zip(module.ARGS, reference_inputs)))
    expected = torch.autograd.grad(reference, reference_inputs, upstream)
    assert torch.allclose(output, reference, rtol=1e-10, atol=1e-12)
    for key, got, want in zip(module.ARGS, grads, expected):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), key


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_passes_gradcheck_at_another_batch_size(name, modules):
    module, tensors, _ = _layer_case(name, modules, seed=4)
    assert torch.autograd.gradcheck(module.Function.apply, tensors, eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_stays_float32(name, modules):
    module, tensors, upstream = _layer_case(name, modules, dtype=torch.float32)
    output = module.Function.apply(*tensors)
    grads = torch.autograd.grad(output, tensors, upstream)
    reference_inputs = [t.detach().double().requires_grad_(True) for t in tensors]
    reference = torch_reference(name)(**dict(zip(module.ARGS, reference_inputs)))
    expected = torch.autograd.grad(reference, reference_inputs, upstream.double())
    assert output.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    for key, got, want in zip(module.ARGS, grads, expected):
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-5), key


@pytest.mark.parametrize("name", list(LAYERS))
def test_the_module_holds_the_parameters(name, modules):
    module = modules[name]
    layer = module.Module(generator=torch.Generator().manual_seed(0), dtype=torch.float64, **SIZES)
    held = dict(layer.named_parameters())
    assert tuple(held) == tuple(LAYERS[name].params[k].name for k in range(len(module.PARAMS)))
    inputs = [torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))]
    call = [held[k] if k in module.PARAMS else inputs.pop(0) for k in module.ARGS]
    assert torch.equal(layer(*[c for c, k in zip(call, module.ARGS) if k not in module.PARAMS]),
                       module.Function.apply(*call))


# what each layer's backward reads, and so what its Function saves: for GELU only its pre-activation
# besides the matrices of the products; for the residual block the ReLU's output, not also its input
# (the mask H > 0 is Z > 0); for layer norm (torch's kernels) X, each row's mean and 1/sqrt(var + eps) as
# columns, and gamma (the closed form's saves, for a layer norm without beta: tests/render/test_torch_kernels.py)
SAVED = {"layer_gelu_dense": ("X", "W", "Z"), "layer_residual_mlp": ("X", "W1", "W2", "H"),
         "layer_norm": ("X", "mean", "rstd", "gamma")}


@pytest.mark.parametrize("name, saved", SAVED.items())
def test_the_function_saves_only_what_backward_reads(name, saved, modules):
    module, tensors, _ = _layer_case(name, modules)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        module.Function.apply(*tensors)
    assert len(packed) == len(saved)
    source = derive.to_torch(LAYERS[name].derive(), name)
    assert f"({', '.join(saved)},)" in source
    backward = source[source.index("def _backward"):source.index("class Function")]
    assert "autograd" not in backward and "requires_grad" not in backward   # no autograd inside



# names the generated torch module uses itself (its import, Function.forward's ctx, Module's self, the
# device its constants are made on, the generator its draws use) given to an input, a parameter or a
# size: each is mangled, and the module is right, against autograd of the layer written in torch
OWN_NAMES = [(name, role) for name in ("torch", "ctx", "self", "device", "generator")
             for role in ("input", "parameter", "size")]


@pytest.mark.parametrize("name, role", OWN_NAMES)
def test_names_the_module_uses_itself_are_mangled(name, role):
    g, batch = named_layer(name, role)
    module = load_module(derive.to_torch(g, "named"))
    values = draw([*g.arguments, g.upstream], {batch: 5}, seed=2)
    tensors = [torch.tensor(values[k], requires_grad=True) for k in module.ARGS]
    upstream = torch.tensor(values[g.upstream.name])
    grads = torch.autograd.grad(module.Function.apply(*tensors), tensors, upstream)
    X, W, Q = [t.detach().clone().requires_grad_(True) for t in tensors]
    reference = torch.sigmoid(X @ W) @ Q + torch.nn.functional.gelu(X @ W) + 1
    for key, got, want in zip(module.ARGS, grads, torch.autograd.grad(reference, [X, W, Q], upstream)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), key

@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_matches_the_torch_oracle(name, modules):
    module = modules[name]
    example = NETWORKS[name]
    args, _ = module.example_inputs(torch.Generator().manual_seed(5), dims={"N": 5})
    tensors = [a.clone().requires_grad_(True) for a in args]
    loss = module.Function.apply(*tensors)
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    params = {p.name: t.detach().numpy() for p in example.wrt for k, t in zip(module.ARGS, tensors) if k == p.name}
    batch = {k: t.detach().numpy() for k, t in zip(module.ARGS, tensors) if k not in params}
    dims = {d: 5 if str(d) == "N" else module.DEFAULT_DIMS[str(d)] for p in example.wrt for d in p.shape
            if not d.is_Integer}
    dims.update({d: 5 if str(d) == "N" else module.DEFAULT_DIMS[str(d)] for s in example.loss.free_symbols
                 for d in getattr(s, "shape", ()) if not getattr(d, "is_Integer", True)})
    want_loss, want = torch_loss_and_grads(example.loss, params, batch, dims)
    assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-10)
    for key, grad in zip(module.ARGS, grads):
        if key in want:
            assert np.allclose(grad.numpy(), want[key], rtol=1e-9, atol=1e-12), key
        else:
            assert grad is None, key


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_passes_gradcheck(name, modules):
    module = modules[name]
    assert module.check_gradients(seed=6)


def test_a_scaled_upstream_scales_a_loss_gradient(modules):
    module = modules["seed_000_bce"]
    args, _ = module.example_inputs(torch.Generator().manual_seed(7))
    tensors = [a.clone().requires_grad_(k in module.PARAMS) for k, a in zip(module.ARGS, args)]
    loss = module.Function.apply(*tensors)
    once = torch.autograd.grad(loss, [t for t in tensors if t.requires_grad], retain_graph=True)
    thrice = torch.autograd.grad(3 * loss, [t for t in tensors if t.requires_grad])
    assert all(torch.allclose(3 * a, b) for a, b in zip(once, thrice))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_runs_on_cuda(name, modules):
    module, tensors, upstream = _layer_case(name, modules, dtype=torch.float32)
    cuda = [t.detach().cuda().requires_grad_(True) for t in tensors]
    output = module.Function.apply(*cuda)
    grads = torch.autograd.grad(output, cuda, upstream.cuda())
    cpu = torch.autograd.grad(module.Function.apply(*tensors), tensors, upstream)
    assert output.device.type == "cuda"
    assert all(torch.allclose(g.cpu(), c, rtol=1e-4, atol=1e-5) for g, c in zip(grads, cpu))


# a drawn network that gradcheck's fixed atol refused, its output in the thousands (a temperature near
# 0): the finite differences of a zero gradient (a bias removed by centring) were noise above 1e-7
LARGE_OUTPUT = Network(rows=False, layers=(Layer(
    width=1, activation=None, slope="", bias=True, residual=False, tie=None, whiten="identity", concat=(1, None),
    bias2=True, scalar="temperature", pool="centre", mix="scaled_identity"),), loss="mse", reduction="mean",
    extras=(), input_in_wrt=True, named=False, n=1, d=1, seed=0, targets="simplex")


# and one whose example inputs drew a negative exponent of a sigmoid under a BCE (derive.truth's domain
# now draws a learnable exponent of a probability positive)
EXPONENT_UNDER_BCE = Network(rows=False, layers=(Layer(1, "sigmoid", whiten="ridge", scalar="exponent", pool="centre"),),
                             loss="bce", reduction="mean", extras=(), input_in_wrt=True, named=False, n=1, d=1, seed=0)


# one whose backward updated a shared product in place (render/reuse.py: an array finished in place owns
# its product), and one with a temperature drawn near 0 (a divisor is now drawn away from 0) whose BCE of
# a sigmoid's power cancels so that gradcheck's fine step carries more rounding than eps |Y|
SHARED_THEN_UPDATED = Network(rows=False, layers=(
    Layer(3, None, bias=False, scalar="temperature", pool="centre"),
    Layer(1, None, bias=True, bias2=True, pool="centre"),
    Layer(3, "sigmoid", bias=True, whiten="identity", bias2=True)),
    loss="bce", reduction="mean", extras=(), input_in_wrt=True, named=False, n=1, d=1, seed=0, targets="simplex")
DIVISOR_UNDER_BCE = Network(rows=False, layers=(
    Layer(3, "sigmoid", bias=True, bias2=True, scalar="temperature"),
    Layer(2, None, bias=False, scalar="temperature", pool="mean"),
    Layer(3, "sigmoid", bias=True, tie=(2, True), scalar="exponent")),
    loss="bce", reduction="sum", extras=(Extra(kind="inverse_power", param="W1", coefficient="1", variant=0),),
    input_in_wrt=True, named=False, n=2, d=1, seed=0, targets="simplex")

# and one with two shared products named alike, W2 @ W1_X and W2 @ W1_X.sum(...): each its own identifier
PRODUCTS_NAMED_ALIKE = Network(rows=False, layers=(
    Layer(1, None, bias=False, scalar="temperature"),
    Layer(2, None, bias=False, scalar="temperature", pool="centre"),
    Layer(1, "sigmoid", bias=True, tie=(2, True), bias2=True, scalar="temperature", pool="centre")),
    loss="bce", reduction="mean", extras=(), input_in_wrt=True, named=False, n=1, d=1, seed=0, targets="simplex")


@settings(max_examples=max(5, settings().max_examples // 20), deadline=None)
@example(net=LARGE_OUTPUT)
@example(net=EXPONENT_UNDER_BCE)
@example(net=SHARED_THEN_UPDATED)
@example(net=DIVISOR_UNDER_BCE)
@example(net=PRODUCTS_NAMED_ALIKE)
@given(net=networks(most=3, widest=3))
def test_property_networks_through_to_torch(net):
    namespace = net.build()
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])
    try:
        module = load_module(derive.to_torch(g, "drawn"))   # verified: gradcheck and the truth inside
    except CodegenError as error:
        pytest.fail(f"to_torch refused a drawn network: {error}")
    values = net.values(namespace)
    dims = {namespace["N"]: net.n, namespace["D"]: net.d}
    tensors = [torch.tensor(values[k], requires_grad=True) for k in module.ARGS]
    loss = module.Function.apply(*tensors)
    grads = dict(zip(module.ARGS, torch.autograd.grad(loss, tensors, allow_unused=True)))
    params = {p.name: values[p.name] for p in g.params}
    batch = {k: v for k, v in values.items() if k not in params}
    want_loss, want = torch_loss_and_grads(namespace["loss"], params, batch, dims)
    assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-9, abs=1e-12)
    for key, value in want.items():
        assert np.allclose(grads[key].numpy(), value, rtol=1e-8, atol=1e-10), key


@pytest.mark.parametrize("scale", [1, 1000])   # gradcheck's tolerance grows with the output: still caught
def test_a_wrong_torch_backward_is_refused(scale, monkeypatch):
    from sympy import MatrixSymbol, Symbol

    from derive.render.torch import TORCH_FORMS, DeriveTorchPrinter
    wrong = {**TORCH_FORMS, "leaky_relu": (TORCH_FORMS["leaky_relu"][0], "torch.where({a} > 0, 1.0, 2.0)")}
    monkeypatch.setattr(DeriveTorchPrinter, "forms", wrong)
    N = Symbol("N", integer=True, positive=True)
    X, W = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 2)
    with pytest.raises(CodegenError, match="gradcheck"):
        derive.to_torch(derive.vjp(scale * derive.leaky_relu(X * W, alpha=0.5), [X], [W]), "wrong")


def test_targets_declared_to_sum_to_one_are_checked(modules):
    module = modules["seed_003_mlp_column"]
    args, _ = module.example_inputs(torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="declared to sum to 1"):
        module.Function.apply(*[2 * a if k == "y" else a for k, a in zip(module.ARGS, args)])


# torch's own kernels that the printer uses for a slope times G, softmax's backward, P Q + R and layer norm: the
# layers above match autograd of the independent layers with them; these rows make sure they are used
KERNELS = {
    "layer_gelu_dense": ["torch.ops.aten.gelu_backward(dY, Z)"],
    "layer_gated_unit": ["torch.ops.aten.tanh_backward(dT, T)", "torch.ops.aten.sigmoid_backward(dG, G)",
                         "torch.addmm(dZv @ Wv.T, dZg, Wg.T)"],
    "layer_residual_mlp": ["torch.ops.aten.threshold_backward(dZ, H, 0)"],
    "layer_attention_head": ["torch._softmax_backward_data(dP, P, 1, dP.dtype)"],
    "layer_norm": ["torch.ops.aten.native_layer_norm_backward("],   # addcmul: test_torch_kernels.py
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_the_backward_uses_torchs_kernels(name):
    source = derive.to_torch(LAYERS[name].derive(), name, verify=False)
    backward = source[source.index("def _backward"):source.index("class Function")]
    for kernel in KERNELS[name]:
        assert kernel in backward


@pytest.mark.parametrize("name, key, shape, message", WRONG_SHAPES)
def test_arguments_of_the_wrong_shape_are_refused_by_name(name, key, shape, message, modules):
    module = modules[name]
    args, _ = module.example_inputs(torch.Generator().manual_seed(0), dims={"N": 5, "D": 3})
    wrong = [torch.zeros(shape, dtype=torch.float64) if k == key else a for k, a in zip(module.ARGS, args)]
    with pytest.raises(ValueError) as caught:
        module.Function.apply(*wrong)
    assert str(caught.value) == message
    assert module.Function.apply(*args).shape[0] == 5   # the right shapes, at another batch size, pass


def test_the_modules_own_check_allows_for_a_large_output():
    namespace = LARGE_OUTPUT.build()
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])
    assert load_module(derive.to_torch(g, "drawn")).check_gradients()


def test_the_modules_own_check_refuses_a_wrong_backward_at_a_large_output(monkeypatch):
    from sympy import MatrixSymbol, Symbol

    from derive.render.torch import TORCH_FORMS, DeriveTorchPrinter
    wrong = {**TORCH_FORMS, "leaky_relu": (TORCH_FORMS["leaky_relu"][0], "torch.where({a} > 0, 1.0, 2.0)")}
    monkeypatch.setattr(DeriveTorchPrinter, "forms", wrong)
    N = Symbol("N", integer=True, positive=True)
    X, W = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 2)
    source = derive.to_torch(derive.vjp(1000 * derive.leaky_relu(X * W, alpha=0.5), [X], [W]), "wrong", verify=False)
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):   # gradcheck's GradcheckError
        load_module(source).check_gradients()
