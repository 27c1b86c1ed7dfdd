"""derive.render.torch_kernels: torch's fused kernels in the torch target, only where the layer is exactly
theirs (layer norm), and torch.addmm for a product plus an array. Each module against autograd of layer
norm written from its definition in plain torch operations (never F.layer_norm, whose kernels it calls)."""

import pytest
from sympy import HadamardPower, HadamardProduct, MatrixSymbol, OneMatrix, Rational, Symbol

import derive
from derive.examples.layer_norm import layer_norm
from derive.render.module import Statement, load_module
from derive.render.torch_kernels import fuse_products, layer_norm_expression, layer_norm_of

from ..layer_references import draw, torch_layer_norm

torch = pytest.importorskip("torch")

N, D = Symbol("N", integer=True, positive=True), Symbol("D", integer=True, positive=True)
X, gamma, beta = MatrixSymbol("X", N, D), MatrixSymbol("gamma", 1, D), MatrixSymbol("beta", 1, D)
MEAN = OneMatrix(D, 1) * OneMatrix(1, D) / D
CENTRED = X - X * MEAN


EPSILON = Rational(1, 100000)


def _scale(power=None):
    return HadamardPower(HadamardPower(CENTRED, 2) * MEAN + EPSILON * OneMatrix(N, D), power or Rational(-1, 2))


# (layer, whether it is layer norm, its torch reference): near misses must keep derive's closed form
LAYERS = {
    "built-in": (lambda: layer_norm().derive(), True, lambda X, gamma, beta: torch_layer_norm(X, gamma, beta)),
    "eps 1e-3": (lambda: derive.vjp(layer_norm_expression(X, gamma, beta, Rational(1, 1000)), [X], [gamma, beta]),
                 True, lambda X, gamma, beta: torch_layer_norm(X, gamma, beta, eps=1e-3)),
    "gamma only (no beta)": (lambda: derive.vjp(HadamardProduct(CENTRED, _scale(), OneMatrix(N, 1) * gamma), [X], [gamma]),
                             False, lambda X, gamma: torch_layer_norm(X, gamma, 0)),
    "a cube root": (lambda: derive.vjp(HadamardProduct(CENTRED, _scale(Rational(-1, 3)), OneMatrix(N, 1) * gamma)
                                       + OneMatrix(N, 1) * beta, [X], [gamma, beta]), False,
                    lambda X, gamma, beta: (X - X.mean(1, keepdim=True)) * ((X - X.mean(1, keepdim=True)) ** 2).mean(
                        1, keepdim=True).add(1e-5) ** (-1 / 3) * gamma + beta),
    "X not differentiated": (lambda: derive.vjp(layer_norm_expression(X, gamma, beta, Rational(1, 100000)), [],
                                                [gamma, beta]), True, lambda X, gamma, beta: torch_layer_norm(X, gamma, beta)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_only_layer_norm_itself_takes_torchs_kernels(name):
    build, is_layer_norm, _ = LAYERS[name]
    g = build()
    assert (layer_norm_of(g) is not None) == is_layer_norm
    source = derive.to_torch(g, "layer")
    backward = source[source.index("def _backward"):source.index("class Function")]
    assert ("native_layer_norm_backward(" in backward) == is_layer_norm
    assert ("torch.addcmul(" in backward) != is_layer_norm   # the closed form's one-pass update otherwise


@pytest.mark.parametrize("name", list(LAYERS))
def test_the_torch_module_matches_autograd_of_layer_norm_from_its_definition(name):
    build, _, reference = LAYERS[name]
    g = build()
    module = load_module(derive.to_torch(g, "layer"))   # verified: forward against derive.truth, gradcheck
    values = draw([*g.arguments, g.upstream], {"N": 5, "D": 6}, seed=1)
    tensors = [torch.tensor(values[k], requires_grad=True) for k in module.ARGS]
    upstream = torch.tensor(values[g.upstream.name])
    output = module.Function.apply(*tensors)
    wanted = [s in g.params for s in g.arguments]
    grads = torch.autograd.grad(output, [t for t, w in zip(tensors, wanted) if w], upstream)
    inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
    expected_output = reference(**dict(zip(module.ARGS, inputs)))
    expected = torch.autograd.grad(expected_output, [t for t, w in zip(inputs, wanted) if w], upstream)
    assert torch.allclose(output, expected_output, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11)
    assert torch.autograd.gradcheck(module.Function.apply, [t.detach().requires_grad_(w) for t, w in zip(tensors, wanted)])


def test_the_layer_norm_kernels_save_x_and_two_columns_not_beta():
    module = load_module(derive.to_torch(layer_norm().derive(), "layer_norm"))
    args, _ = module.example_inputs(torch.Generator().manual_seed(0), dims={"N": 7, "D": 5})
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        module.Function.apply(*[a.requires_grad_(True) for a in args])
    assert sorted(tuple(t.shape) for t in packed) == [(1, 5), (7, 1), (7, 1), (7, 5)]   # gamma, mean, rstd, X


def test_the_layer_norm_kernels_keep_float32():
    module = load_module(derive.to_torch(layer_norm().derive(), "layer_norm"))
    args, upstream = module.example_inputs(torch.Generator().manual_seed(0), dims={"N": 7, "D": 5}, dtype=torch.float32)
    args = [a.requires_grad_(True) for a in args]
    grads = torch.autograd.grad(module.Function.apply(*args), args, upstream)
    doubles = [a.detach().double().requires_grad_(True) for a in args]
    expected = torch.autograd.grad(torch_layer_norm(*doubles), doubles, upstream.double())
    for got, want in zip(grads, expected):
        assert got.dtype == torch.float32 and torch.allclose(got.double(), want, rtol=1e-4, atol=1e-5)


# statements -> what fuse_products makes of them (names in TENSORS hold tensors, D is a size; SHAPES:
# the shapes the printer knows, of products and arguments)
TENSORS = {"X", "W", "b", "Z", "dZ", "dY", "V", "dX", "c"}
SHAPES = {"dZ @ W.T": "N x 3", "dY @ V.T": "N x 3", "dY": "N x 3", "c": "N x 1", "X @ c": "N x 1"}
FUSED = [
    ([Statement("Z", "X @ W"), Statement("Z", "b", op="+=")], ["Z = torch.addmm(b, X, W)"]),
    ([Statement("dX", "dZ @ W.T + dY @ V.T")], ["dX = torch.addmm(dZ @ W.T, dY, V.T)"]),
    ([Statement("dX", "dY + dZ @ W.T")], ["dX = torch.addmm(dY, dZ, W.T)"]),
    ([Statement("dX", "X @ c + dY")], ["dX = X @ c + dY"]),            # N x 1 + N x 3: the product broadcasts
    ([Statement("dX", "dZ @ W.T + b")], ["dX = dZ @ W.T + b"]),        # b's shape unknown
    ([Statement("Z", "X @ W"), Statement("Z", "D", op="+=")], ["Z = X @ W", "Z += D"]),           # a size
    ([Statement("Z", "X @ W"), Statement("Z", "X + b", op="+=")], ["Z = X @ W", "Z += X + b"]),   # no array to add into
    ([Statement("Z", "X @ W"), Statement("V", "b", op="+=")], ["Z = X @ W", "V += b"]),           # another target
    ([Statement("dX", "dZ @ W.T + 1 / D")], ["dX = dZ @ W.T + 1 / D"]),
]


@pytest.mark.parametrize("statements, fused", FUSED)
def test_a_product_plus_an_array_is_one_addmm(statements, fused):
    assert [f"{s.target} {s.op} {s.code}" for s in fuse_products(statements, TENSORS, SHAPES)] == fused


def test_the_gated_unit_adds_its_two_products_in_one_addmm():
    from derive.examples.gated_unit import gated_unit
    source = derive.to_torch(gated_unit().derive(), "gated")   # verified by gradcheck
    assert "dX = torch.addmm(dZv @ Wv.T, dZg, Wg.T)" in source
    statements = source[source.index("def _forward"):source.index("class Function")]   # not the helpers'
    assert "Zg = torch.addmm(bg, X, Wg)" in statements and "+=" not in statements
