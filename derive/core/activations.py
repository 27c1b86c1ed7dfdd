"""The activations: one :class:`~derive.core.elementwise.Activation` record each, and their scalar
functions.

The scalar functions (``Relu(x)``, ``Sigmoid(x)`` ...) are ordinary SymPy functions that know their
derivative (``fdiff``) and their rewrite into elementary functions (for ``simplify``), so ``subs``,
``as_explicit`` and ``lambdify`` work on everything derive returns. Each record then says, in one
place, everything else about its activation; ``relu = activation(Activation("relu", ...))`` makes the
matrix function people write, ``relu(X W)``. To add an activation, add a record here (or anywhere:
tests/core/test_activations.py registers a toy one).
"""

from __future__ import annotations

import math

import numpy as np
from sympy import (
    Function,
    HadamardPower,
    Heaviside,
    Min,
    Piecewise,
    Rational,
    S,
    erf,
    pi,
    sqrt,
)
from sympy import exp as sympy_exp
from sympy import log as sympy_log
from sympy import tanh as sympy_tanh
from sympy.core.function import ArgumentIndexError

from .algebra import hadamard, one_minus
from .elementwise import Activation, activation
from .lazy import special

__all__ = [
    "LEAKY_SLOPE", "Elu", "Gelu", "Indicator", "LeakyRelu", "NormalCdf", "Relu", "Sigmoid", "Silu", "Softplus",
    "elu", "exp", "gelu", "leaky_relu", "log", "relu", "sigmoid", "silu", "softplus", "tanh",
]


# ---------------------------------------------------------------------------------------------
# Scalar functions
# ---------------------------------------------------------------------------------------------

class _ScalarFunction(Function):
    """A scalar activation: evaluates numerically through its elementary rewrite."""

    def _eval_evalf(self, prec):
        return self.rewrite(sympy_exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real


def _normal_cdf(x):
    return 0.5 * (1.0 + special.erf(x / math.sqrt(2.0)))


class Indicator(_ScalarFunction):
    """1 for x > 0, else 0: the derivative of relu, 0 at 0 as in PyTorch (Heaviside(x, 0))."""

    nargs = 1
    _imp_ = staticmethod(lambda x: np.where(np.asarray(x) > 0, 1.0, 0.0))   # lambdify's NumPy value

    @classmethod
    def eval(cls, x):
        if x.is_extended_positive:
            return S.One
        if x.is_extended_nonpositive:
            return S.Zero

    def fdiff(self, argindex=1):
        # zero almost everywhere; the Dirac delta at 0 plays no part in a gradient
        return S.Zero

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return Heaviside(x, 0)

    _eval_rewrite_as_Heaviside = _eval_rewrite_as_exp


class NormalCdf(_ScalarFunction):
    """Phi(x), the standard normal distribution function, (1 + erf(x / sqrt 2)) / 2."""

    nargs = 1
    _imp_ = staticmethod(_normal_cdf)

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return sympy_exp(-x**2 / 2) / sqrt(2 * pi)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return (1 + erf(x / sqrt(2))) / 2

    _eval_rewrite_as_erf = _eval_rewrite_as_exp


class Relu(_ScalarFunction):
    """max(x, 0). Its derivative at 0 is taken to be 0, as PyTorch does."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_extended_nonnegative:
            return x
        if x.is_extended_negative:
            return S.Zero

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return Indicator(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return Piecewise((x, x > 0), (0, True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp


class LeakyRelu(_ScalarFunction):
    """x for x > 0, alpha x otherwise (derivative alpha at 0)."""

    nargs = 2

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x, alpha = self.args
        return alpha + (1 - alpha) * Indicator(x)

    def _eval_rewrite_as_exp(self, x, alpha, **kwargs):
        return Piecewise((x, x > 0), (alpha * x, True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp


class Elu(_ScalarFunction):
    """x for x > 0, alpha (e^x - 1) otherwise."""

    nargs = 2

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x, alpha = self.args
        return Indicator(x) + (1 - Indicator(x)) * alpha * sympy_exp(Min(x, 0))

    def _eval_rewrite_as_exp(self, x, alpha, **kwargs):
        return Piecewise((x, x > 0), (alpha * (sympy_exp(x) - 1), True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp


class Sigmoid(_ScalarFunction):
    """1 / (1 + e^-x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy_exp(-x))


class Gelu(_ScalarFunction):
    """x Phi(x), the exact (erf) GELU."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return NormalCdf(x) + x * sympy_exp(-x**2 / 2) / sqrt(2 * pi)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return x * (1 + erf(x / sqrt(2))) / 2


class Silu(_ScalarFunction):
    """x sigma(x), also called swish."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return Sigmoid(x) * (1 + x * (1 - Sigmoid(x)))

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return x / (1 + sympy_exp(-x))


class Softplus(_ScalarFunction):
    """log(1 + e^x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy_log(1 + sympy_exp(x))


# ---------------------------------------------------------------------------------------------
# The records: matrix functions applied entry by entry
# ---------------------------------------------------------------------------------------------
# NumPy forms keep the argument's dtype (Python floats do not promote float32 arrays); the
# reference formulas are the textbook definitions in float64 (relu'(0) = 0, as Indicator says).

relu = activation(Activation(
    "relu", Relu, r"\operatorname{relu}", aliases=("ReLU", "Relu"),
    numpy="np.maximum({a}, 0)", numpy_prime="({a} > 0).astype({a}.dtype)",
    # a boolean mask multiplies in one pass, and in place keeps G's dtype
    numpy_mask="{a} > 0", numpy_in_place=("*=", "{a} > 0", None),
    reference=lambda x: np.where(x > 0, x, 0.0),
    definition=r"\operatorname{relu}(x) = \max(0, x)", slope=r"\operatorname{relu}'(x) = \mathbb{1}[x > 0]",
    latex_prime=r"\mathbb{1}\left[{a} > 0\right]",
    torch=lambda torch: torch.relu, jax=lambda jax: jax.nn.relu))

LEAKY_SLOPE = Rational(1, 100)

leaky_relu = activation(Activation(
    "leaky_relu", LeakyRelu, r"\operatorname{leaky}", aliases=("LeakyReLU",), params=(("alpha", LEAKY_SLOPE),),
    numpy="np.where({a} > 0, {a}, {p0} * {a})", numpy_prime="np.where({a} > 0, 1.0, {p0}).astype({a}.dtype)",
    reference=lambda x, alpha: np.where(x > 0, x, alpha * x),
    definition=r"\operatorname{leaky}_{\alpha}(x) = \max(\alpha x, x)",
    slope=r"\operatorname{leaky}_{\alpha}'(x) = \mathbb{1}[x > 0] + \alpha\, \mathbb{1}[x \le 0]"))

elu = activation(Activation(
    "elu", Elu, r"\operatorname{elu}", aliases=("ELU",), params=(("alpha", 1),),
    numpy="np.where({a} > 0, {a}, {p0} * np.expm1(np.minimum({a}, 0)))",
    numpy_prime="np.where({a} > 0, 1, {p0} * np.exp(np.minimum({a}, 0)))",
    reference=lambda x, alpha: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0)),
    definition=r"\operatorname{elu}_{\alpha}(x) = x \text{ for } x > 0,\ \alpha (e^{x} - 1) \text{ else}",
    slope=r"\operatorname{elu}_{\alpha}'(x) = 1 \text{ for } x > 0,\ \alpha e^{x} \text{ else}"))

sigmoid = activation(Activation(
    "sigmoid", Sigmoid, r"\sigma", aliases=("sigma", "σ", "sigm", "logistic"),
    # the tanh form: no overflow warning for large |x|, unlike 1/(1 + exp(-x))
    numpy="(0.5 + 0.5 * np.tanh(0.5 * {a}))", numpy_prime="(0.25 - 0.25 * np.tanh(0.5 * {a}) ** 2)",
    reference=special.expit, derivative=lambda node, out: hadamard(out, one_minus(out)),
    definition=r"\sigma(x) = \frac{1}{1 + e^{-x}}", slope=r"\sigma'(x) = \sigma(x)\left(1 - \sigma(x)\right)",
    torch=lambda torch: torch.sigmoid, jax=lambda jax: jax.nn.sigmoid))

gelu = activation(Activation(
    "gelu", Gelu, r"\operatorname{GELU}", aliases=("GELU",),
    numpy="gelu({a})", numpy_prime="gelu_prime({a})",
    # GELU's slope reads Phi(A) off the cached A Phi(A) instead of computing erf again
    numpy_in_place=("=", "gelu_prime({a}, times={target})", "gelu_prime({a}, times={target}, value={value})"),
    reference=lambda x: x * _normal_cdf(x),
    definition=r"\operatorname{GELU}(x) = x\, \Phi(x)",
    slope=r"\operatorname{GELU}'(x) = \Phi(x) + x\, \phi(x)",
    torch=lambda torch: torch.nn.functional.gelu, jax=lambda jax: lambda z: jax.nn.gelu(z, approximate=False)))

silu = activation(Activation(
    "silu", Silu, r"\operatorname{SiLU}", aliases=("SiLU", "swish"),
    numpy="({a} * (0.5 + 0.5 * np.tanh(0.5 * {a})))", numpy_prime="silu_prime({a})",
    reference=lambda x: x * special.expit(x),
    definition=r"\operatorname{SiLU}(x) = x\, \sigma(x)",
    slope=r"\operatorname{SiLU}'(x) = \sigma(x) + x\, \sigma(x)\left(1 - \sigma(x)\right)",
    torch=lambda torch: torch.nn.functional.silu, jax=lambda jax: jax.nn.silu))

softplus = activation(Activation(
    "softplus", Softplus, r"\operatorname{softplus}",
    numpy="np.logaddexp(0, {a})", numpy_prime="(0.5 + 0.5 * np.tanh(0.5 * {a}))",
    reference=lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),   # log(1 + e^x), without overflow
    derivative=lambda node, out: sigmoid(node.arg),
    definition=r"\operatorname{softplus}(x) = \log(1 + e^{x})", slope=r"\operatorname{softplus}'(x) = \sigma(x)"))

tanh = activation(Activation(
    "tanh", sympy_tanh, r"\tanh", numpy="np.tanh({a})", numpy_prime="(1 - np.tanh({a}) ** 2)",
    derivative=lambda node, out: one_minus(HadamardPower(out, 2)),
    definition=r"\tanh(x) = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}", slope=r"\tanh'(x) = 1 - \tanh^{2}(x)",
    torch=lambda torch: torch.tanh, jax=lambda jax: jax.numpy.tanh))

exp = activation(Activation(
    "exp", sympy_exp, r"\exp", numpy="np.exp({a})", numpy_prime="np.exp({a})",
    derivative=lambda node, out: out))

log = activation(Activation(
    "log", sympy_log, r"\log", aliases=("ln",), numpy="np.log({a})", numpy_prime="(1 / {a})",
    derivative=lambda node, out: HadamardPower(node.arg, -1), positive_argument=True))
