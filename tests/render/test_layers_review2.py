"""A second review of the torch and JAX layer modules: inputs their first tests did not try, each against
torch autograd or jax.vjp of the layer written by hand in plain operations (float64)."""

import numpy as np
import pytest
from sympy import HadamardPower, HadamardProduct, MatrixSymbol, OneMatrix, Rational, Symbol

import derive
from derive.render.module import load_module

torch = pytest.importorskip("torch")

N, D = Symbol("N", integer=True, positive=True), Symbol("D", integer=True, positive=True)


def _gelu_dense():
    X, W, b = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 4), MatrixSymbol("b", 1, 4)
    return derive.vjp(derive.gelu(X * W + OneMatrix(N, 1) * b), [X], [W, b])


@pytest.fixture(scope="module")
def gelu_dense():
    return load_module(derive.to_torch(_gelu_dense(), "gelu_dense"))


# --- double backward ---------------------------------------------------------------------------------
# The backward is a closed form in the saved tensors, and some of those (a pre-activation Z, layer norm's
# rstd) are intermediates that carry no history: differentiating the backward again (create_graph=True, a
# gradient penalty) would treat them as constants and give a wrong second derivative. It must refuse.

def test_differentiating_the_backward_again_is_refused_not_wrong(gelu_dense):
    generator = torch.Generator().manual_seed(0)
    X, W, b = (torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
               for shape in ((5, 3), (3, 4), (1, 4)))
    upstream = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(gelu_dense.Function.apply(X, W, b), (X, W, b), upstream, create_graph=True)
    # first-order use is unchanged: the gradient is autograd's of the layer written by hand
    grads = torch.autograd.grad(gelu_dense.Function.apply(X, W, b), (X, W, b), upstream)
    reference = [t.detach().clone().requires_grad_(True) for t in (X, W, b)]
    expected = torch.autograd.grad(torch.nn.functional.gelu(reference[0] @ reference[1] + reference[2]), reference,
                                   upstream)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


# --- a size declared as an expression ----------------------------------------------------------------
# X: N x (D + 1), W: (D + 1) x D, b: 1 x D. D is read off W; an X or W whose D + 1 is not one more than
# b's D is refused by name (it was taken, unchecked: the sizes D + 1 were not checked at all)

def _widened():
    X, W, b = MatrixSymbol("X", N, D + 1), MatrixSymbol("W", D + 1, D), MatrixSymbol("b", 1, D)
    return derive.vjp(derive.tanh(X * W + OneMatrix(N, 1) * b), [X], [W, b])


WIDENED_SHAPES = [   # shapes of X, W, b -> the message (None: accepted)
    (((5, 4), (4, 3), (1, 3)), None),
    (((5, 3), (3, 3), (1, 3)), "the argument X has shape 5 x 3, but it is declared N x D + 1 (here 5 x 4)"),
    (((5, 7), (7, 3), (1, 3)), "the argument X has shape 5 x 7, but it is declared N x D + 1 (here 5 x 4)"),
    (((5, 4), (3, 3), (1, 3)), "the argument W has shape 3 x 3, but it is declared D + 1 x D (here 4 x 3)"),
]


@pytest.fixture(scope="module")
def widened():
    g = _widened()
    jax_module = load_module(derive.to_jax(g, "widened")) if _has_jax() else None
    return load_module(derive.to_torch(g, "widened")), jax_module, load_module(derive.to_numpy(g, "widened"))


def _has_jax():
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("shapes, message", WIDENED_SHAPES)
def test_a_size_declared_as_an_expression_is_checked(shapes, message, widened):
    torch_module, jax_module, numpy_module = widened
    generator = np.random.default_rng(0)
    values = [generator.standard_normal(shape) for shape in shapes]
    calls = [lambda: torch_module.Function.apply(*[torch.tensor(v) for v in values]),
             lambda: numpy_module.forward(*values)]
    if jax_module is not None:
        import jax
        calls.append(lambda: jax.jit(jax_module.fn)(*[jax.numpy.asarray(v, dtype=jax.numpy.float32) for v in values]))
    for call in calls:
        if message is None:
            X, W, b = values
            output = call()
            output = output[0] if isinstance(output, tuple) else output
            assert np.allclose(np.asarray(output), np.tanh(X @ W + b), rtol=1e-5)
        else:
            with pytest.raises(ValueError) as caught:
                call()
            assert str(caught.value) == message


def test_a_zero_dimensional_argument_is_named_with_its_shape(gelu_dense):
    args = [torch.tensor(1.0, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64),
            torch.zeros(1, 4, dtype=torch.float64)]
    with pytest.raises(ValueError) as caught:
        gelu_dense.Function.apply(*args)
    assert str(caught.value) == "the argument X has shape () (a 0-d array), but it is declared N x 3"


# --- dims= of the generator ----------------------------------------------------------------------------
# a size that is not a positive integer was truncated (N = 2.5 made modules checked at N = 2) or parsed
# ("3"); normalize_dims refuses them, and so do the module generators now

@pytest.mark.parametrize("value", [2.5, "3", True])
@pytest.mark.parametrize("target", ["to_torch", "to_numpy"])
def test_a_size_that_is_not_a_positive_integer_is_refused(value, target):
    with pytest.raises(derive.DimsError, match=r"dimension N must be a positive integer, got"):
        getattr(derive, target)(_gelu_dense(), "gelu_dense", dims={"N": value})


# --- inputs that held: kept as rows, so that a change to the addmm guards or the layer norm match is caught
# (layer, whether torch's layer norm kernels take it, its definition in plain torch)

def _rows():
    X, W, Wt = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 4), MatrixSymbol("Wt", 4, 3)
    b, c, B, s = MatrixSymbol("b", 1, 4), MatrixSymbol("c", 1, 4), MatrixSymbol("B", N, 4), MatrixSymbol("s", 1, 1)
    w, b1 = MatrixSymbol("w", 3, 1), MatrixSymbol("b1", 1, 1)
    Xd, gamma, beta, column = MatrixSymbol("X", N, D), MatrixSymbol("gamma", 1, D), MatrixSymbol("beta", 1, D), \
        MatrixSymbol("gamma", N, 1)
    one = OneMatrix(N, 1)
    means = OneMatrix(D, 1) * OneMatrix(1, D) / D
    centred = Xd - Xd * means

    def scale(spread):
        return HadamardPower(spread + Rational(1, 100000) * OneMatrix(N, D), Rational(-1, 2))

    def reference_norm(X, gamma, beta, eps=1e-5, unbiased=False, dim=1):
        return (X - X.mean(dim, keepdim=True)) / (X.var(dim, keepdim=True, unbiased=unbiased) + eps).sqrt() * gamma + beta

    batch = OneMatrix(N, 1) * OneMatrix(1, N) / N
    along_batch = Xd - batch * Xd
    return {
        "a full N x H bias": (derive.vjp(X * W + B, [X], [W, B]), False, lambda X, W, B: X @ W + B),
        "a bias on the left": (derive.vjp(one * b + X * W, [X], [W, b]), False, lambda X, W, b: b + X @ W),
        "two biases": (derive.vjp(X * W + one * b + one * c, [X], [W, b, c]), False, lambda X, W, b, c: X @ W + b + c),
        "a product plus a product": (derive.vjp(X * W + X * Wt.T, [X], [W, Wt]), False, lambda X, W, Wt: X @ W + X @ Wt.T),
        "a scaled product": (derive.vjp(2 * X * W + one * b, [X], [W, b]), False, lambda X, W, b: 2 * X @ W + b),
        "a 1 x 1 bias": (derive.vjp(X * W + one * s * OneMatrix(1, 4), [X], [W, s]), False, lambda X, W, s: X @ W + s),
        "H = 1": (derive.vjp(X * w + one * b1, [X], [w, b1]), False, lambda X, w, b1: X @ w + b1),
        "a weight used twice": (derive.vjp(derive.tanh(X * W) * W.T, [X], [W]), False, lambda X, W: torch.tanh(X @ W) @ W.T),
        "layer norm, gamma given as an input": (
            derive.vjp(HadamardProduct(centred, scale(HadamardPower(centred, 2) * means), one * gamma) + one * beta,
                       [Xd, gamma], [beta]), True, reference_norm),
        "variance over D - 1": (derive.vjp(HadamardProduct(centred, scale(HadamardPower(centred, 2) * means * D / (D - 1)),
                                                           one * gamma) + one * beta, [Xd], [gamma, beta]), False,
                                lambda X, gamma, beta: reference_norm(X, gamma, beta, unbiased=True)),
        "normalised over the batch": (derive.vjp(HadamardProduct(along_batch, scale(batch * HadamardPower(along_batch, 2)),
                                                                 one * gamma) + one * beta, [Xd], [gamma, beta]), False,
                                      lambda X, gamma, beta: reference_norm(X, gamma, beta, dim=0)),
        "gamma a column": (derive.vjp(HadamardProduct(centred, scale(HadamardPower(centred, 2) * means),
                                                      column * OneMatrix(1, D)) + one * beta, [Xd], [column, beta]), False,
                           lambda X, gamma, beta: reference_norm(X, gamma, beta)),
    }


ROWS = _rows()


@pytest.mark.parametrize("name", list(ROWS))
@pytest.mark.parametrize("batch", [1, 6])
def test_layers_near_the_fused_kernels_match_autograd_of_their_definition(name, batch):
    g, is_layer_norm, reference = ROWS[name]
    source = derive.to_torch(g, "layer")   # verified
    assert ("native_layer_norm(" in source) == is_layer_norm
    module = load_module(source)
    generator = torch.Generator().manual_seed(batch)
    shapes = {s.name: tuple(batch if str(d) == "N" else 5 if str(d) == "D" else int(d) for d in s.shape)
              for s in g.arguments}
    inputs = [torch.randn(shapes[k], generator=generator, dtype=torch.float64).T.contiguous().T.requires_grad_(True)
              for k in module.ARGS]   # non-contiguous where not a vector
    output = module.Function.apply(*inputs)
    upstream = torch.randn(output.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad(output, inputs, upstream)
    plain = [t.detach().clone().requires_grad_(True) for t in inputs]
    expected_output = reference(**dict(zip(module.ARGS, plain)))
    expected = torch.autograd.grad(expected_output, plain, upstream)
    assert torch.allclose(output, expected_output, rtol=1e-10, atol=1e-12)
    for key, got, want in zip(module.ARGS, grads, expected):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), key
