"""Independent re-implementations of the built-in layers in plain torch and plain JAX (test-only).

Written from the layers' textbook definitions, not from derive's output: each takes the arrays by
the layer's argument names and returns Y. Their autograd (torch) and jax.vjp (JAX) are the truth that
derive's closed forms and generated modules are compared with.
"""

from __future__ import annotations

import numpy as np


def torch_reference(name: str):
    import torch
    import torch.nn.functional as F

    return {
        "layer_gelu_dense": lambda X, W, b: F.gelu(X @ W + b),
        "layer_norm": lambda X, gamma, beta: torch_layer_norm(X, gamma, beta),
        "layer_attention_head": lambda X, Wq, Wk, Wv: torch.softmax((X @ Wq) @ (X @ Wk).T / 2, dim=1) @ (X @ Wv),
        "layer_gated_unit": lambda X, Wg, bg, Wv, bv: torch.sigmoid(X @ Wg + bg) * torch.tanh(X @ Wv + bv),
        "layer_residual_mlp": lambda X, W1, b1, W2, b2: X + torch.relu(X @ W1 + b1) @ W2 + b2,
    }[name]


def torch_layer_norm(X, gamma, beta, eps=1e-5):
    """Layer norm from its definition in plain torch operations: not F.layer_norm, whose kernels the
    generated torch module calls (a check must not share them)."""
    mean = X.mean(dim=1, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=1, keepdim=True)
    return (X - mean) / (var + eps).sqrt() * gamma + beta


def jax_reference(name: str):
    import jax
    import jax.numpy as jnp

    def layer_norm(X, gamma, beta):
        mean = jnp.mean(X, axis=1, keepdims=True)
        var = jnp.mean((X - mean) ** 2, axis=1, keepdims=True)
        return (X - mean) / jnp.sqrt(var + 1e-5) * gamma + beta

    return {
        "layer_gelu_dense": lambda X, W, b: jax.nn.gelu(X @ W + b, approximate=False),
        "layer_norm": layer_norm,
        "layer_attention_head": lambda X, Wq, Wk, Wv: jax.nn.softmax((X @ Wq) @ (X @ Wk).T / 2, axis=1) @ (X @ Wv),
        "layer_gated_unit": lambda X, Wg, bg, Wv, bv: jax.nn.sigmoid(X @ Wg + bg) * jnp.tanh(X @ Wv + bv),
        "layer_residual_mlp": lambda X, W1, b1, W2, b2: X + jax.nn.relu(X @ W1 + b1) @ W2 + b2,
    }[name]


def named_layer(name: str, role: str):
    """(the layer sigmoid(X W) Q + gelu(X W) + 1 with the input X, the parameter Q or the batch size
    named ``name``, the batch size's name): names a generated module might use itself."""
    from sympy import MatrixSymbol, OneMatrix, Symbol

    import derive

    N = Symbol(name if role == "size" else "N", integer=True, positive=True)
    X = MatrixSymbol(name if role == "input" else "X", N, 3)
    W, Q = MatrixSymbol("W", 3, 4), MatrixSymbol(name if role == "parameter" else "Q", 4, 4)
    output = derive.sigmoid(X * W) * Q + derive.gelu(X * W) + OneMatrix(N, 4)
    return derive.vjp(output, inputs=[X], params=[W, Q]), str(N)


def draw(symbols, sizes: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard normal float64 values of each MatrixSymbol at ``sizes`` (by dimension name)."""
    rng = np.random.default_rng(seed)
    values = {}
    for s in symbols:
        dims = tuple(int(d) if d.is_Integer else int(sizes[str(d)]) for d in s.shape)
        values[s.name] = rng.standard_normal(dims)
    return values


# an argument of the wrong shape, and the message each target's module refuses it with (torch, JAX and
# NumPy read one check_shapes): (layer, argument, its shape, message), at N = 5 and D = 3
WRONG_SHAPES = [
    ("layer_norm", "gamma", (1, 4), "the argument gamma has shape 1 x 4, but it is declared 1 x D (here 1 x 3)"),
    ("layer_norm", "X", (5,), "the argument X has shape 5, but it is declared N x D"),
    ("layer_gelu_dense", "W", (2, 4), "the argument W has shape 2 x 4, but it is declared 3 x 4"),
    ("layer_attention_head", "Wk", (3, 5), "the argument Wk has shape 3 x 5, but it is declared 3 x 4"),
]
