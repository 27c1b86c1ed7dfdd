"""derive: symbolic matrix calculus for backpropagation.

Write a network as SymPy matrix expressions, then ``g = derive.gradients(loss, wrt=[W1, b1, ...])``
gives closed-form gradients (``g[W1]``), the backward steps (``g.steps``), index forms
(``g.index_form(W1)``), the explicit elementwise truth (``g.elementwise(W1, dims)``) and a check
that they agree (``g.verify(dims)``).
"""

from .check import CheckResult, check
from .codegen import to_numpy
from .derivation import Derivation, Forward, Verification, gradients
from .errors import (
    CodegenError,
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
    gelu,
    leaky_relu,
    log_softmax,
    mse,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
)
from .functions import (
    exp_ as exp,
)
from .functions import (
    log_ as log,
)
from .functions import (
    tanh_ as tanh,
)
from .graph import Step
from .render import to_latex
from .rules import supported

__all__ = [
    "CheckResult",
    "CodegenError",
    "Derivation",
    "DeriveError",
    "DimsError",
    "ExpansionTooLarge",
    "Forward",
    "GradientMismatch",
    "InvalidParameter",
    "LatexError",
    "NetworkFileError",
    "NonScalarLoss",
    "OutputError",
    "ParameterNotInLoss",
    "ParseError",
    "ShapeError",
    "Step",
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
    "to_latex",
    "to_numpy",
]
__version__ = "0.1.0"
