"""A second review of the torch and JAX layer modules: inputs their first tests did not try, each against
torch autograd or jax.vjp of the layer written by hand in plain operations (float64)."""

import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol

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

