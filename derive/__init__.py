"""derive: symbolic matrix calculus for backpropagation.

Write a network as SymPy matrix expressions, then ``g = derive.gradients(loss, wrt=[W1, b1, ...])``
gives closed-form gradients (``g[W1]``), the backward steps (``g.steps``), index forms
(``g.index_form(W1)``), the explicit elementwise truth (``g.elementwise(W1, dims)``) and a check
that they agree (``g.verify(dims)``); second order: Hessian-vector products (``g.hvp({W1: V})``) and a
vector parameter's Hessian (``g.hessian(w)``), in closed form.
"""

from . import testing as testing  # derive.testing.assert_gradient
from .checker.check import check
from .checker.results import CheckResult
from .core import truth as truth  # derive.truth.domain: the loss's domain (README)
from .core.activations import elu, exp, gelu, leaky_relu, log, relu, sigmoid, silu, softplus, tanh
from .core.derivation import Derivation, Forward, Verification, gradients
from .core.graph import Step
from .core.layer import Layer, vjp
from .core.losses import bce, cross_entropy, mse
from .core.rules import supported
from .core.second_order import Hvp, TangentStep
from .core.softmax import log_softmax, softmax
from .errors import (
    CodegenError,
    DeriveError,
    DimsError,
    ExpansionTooLarge,
    GradientMismatch,
    InputIsParameter,
    InvalidLayerOutput,
    InvalidParameter,
    LatexError,
    NetworkFileError,
    NonScalarLoss,
    OutputError,
    ParameterNotInLoss,
    ParseError,
    ShapeError,
    UnsupportedOperation,
)
from .render.frameworks import to_jax, to_torch
from .render.layer_numpy import to_numpy
from .render.sheet import to_latex
from .version import __version__ as __version__

__all__ = [
    "CheckResult",
    "CodegenError",
    "Derivation",
    "DeriveError",
    "DimsError",
    "ExpansionTooLarge",
    "Forward",
    "GradientMismatch",
    "Hvp",
    "InputIsParameter",
    "InvalidLayerOutput",
    "InvalidParameter",
    "LatexError",
    "Layer",
    "NetworkFileError",
    "NonScalarLoss",
    "OutputError",
    "ParameterNotInLoss",
    "ParseError",
    "ShapeError",
    "Step",
    "TangentStep",
    "UnsupportedOperation",
    "Verification",
    "bce",
    "check",
    "cross_entropy",
    "elu",
    "exp",
    "gelu",
    "gradients",
    "leaky_relu",
    "log",
    "log_softmax",
    "mse",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "supported",
    "tanh",
    "to_jax",
    "to_latex",
    "to_numpy",
    "to_torch",
    "vjp",
]
