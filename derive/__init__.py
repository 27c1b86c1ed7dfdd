"""derive: symbolic matrix calculus for backpropagation.

Write a network as SymPy matrix expressions, then ``g = derive.gradients(loss, wrt=[W1, b1, ...])``
gives closed-form gradients (``g[W1]``), the backward steps (``g.steps``), index forms
(``g.index_form(W1)``), the explicit elementwise truth (``g.elementwise(W1, dims)``) and a check
that they agree (``g.verify(dims)``).
"""

from .check import CheckResult, check
from .derivation import Derivation, Forward, Verification, gradients
from .errors import (
    DeriveError,
    DimsError,
    ExpansionTooLarge,
    GradientMismatch,
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
from .functions import (
    bce,
    cross_entropy,
    elu,
    exp_ as exp,
    gelu,
    leaky_relu,
    log_ as log,
    log_softmax,
    mse,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh_ as tanh,
)
from .graph import Step
from .render import to_latex
from .rules import supported

__all__ = [
    "gradients", "Derivation", "Forward", "Verification", "Step", "supported", "to_latex", "check", "CheckResult",
    "relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu", "softplus", "tanh", "exp", "log",
    "softmax", "log_softmax", "mse", "bce", "cross_entropy",
    "DeriveError", "DimsError", "ExpansionTooLarge", "GradientMismatch", "InvalidParameter",
    "LatexError", "NetworkFileError", "NonScalarLoss", "OutputError", "ParameterNotInLoss", "ParseError", "ShapeError",
    "UnsupportedOperation",
]
__version__ = "0.1.0"
