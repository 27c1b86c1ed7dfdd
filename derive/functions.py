"""What derive adds to SymPy for writing networks: activations, softmax and losses.

Three kinds of object live here, all ordinary SymPy classes so that ``subs``, ``as_explicit`` and
``lambdify`` work on everything derive returns:

* scalar functions (``Sigmoid(x)``, ``Relu(x)`` ...) that know their derivative (``fdiff``), how to
  evaluate with NumPy (``_numpycode``) and how to rewrite into elementary functions (for ``simplify``);
* matrix functions applied entry by entry (``sigmoid(A)``, ``relu(A)`` ...), subclasses of
  :class:`Elementwise`, each knowing its derivative as a matrix expression that reuses the forward
  value where it can (``sigmoid'(A) = S ⊙ (1 - S)`` with ``S`` the output), and softmax;
* losses (``mse``, ``bce``, ``cross_entropy``): scalar expressions of a prediction and a target.

Rows are examples by default (``X W + 1 b``); pass ``examples="columns"`` for ``W x + b``.
"""

from __future__ import annotations

from sympy import (
    Basic,
    Dummy,
    Expr,
    Function,
    HadamardPower,
    Heaviside,
    Integer,
    Lambda,
    MatrixBase,
    MatrixExpr,
    MatrixSymbol,
    Min,
    Piecewise,
    Rational,
    S,
    Sum,
    Transpose,
    erf,
    exp,
    log,
    ones,
    pi,
    sqrt,
    sympify,
    tanh,
)
from sympy.core.function import ArgumentIndexError
from sympy.matrices.expressions.matexpr import MatrixElement

from .algebra import hadamard, one_minus
from .errors import InvalidArgument, ShapeError

__all__ = [
    "BinaryCrossEntropy",
    "Elementwise",
    "Elu",
    "Gelu",
    "LeakyRelu",
    "Loss",
    "NormalCdf",
    "Relu",
    "Sigmoid",
    "Silu",
    "SoftmaxCrossEntropy",
    "Softplus",
    "SquaredError",
    "Step",
    "bce",
    "cross_entropy",
    "elu",
    "examples_axis",
    "exp_",
    "gelu",
    "leaky_relu",
    "log_",
    "log_softmax",
    "mse",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh_",
]


# ---------------------------------------------------------------------------------------------
# Scalar functions
# ---------------------------------------------------------------------------------------------

class _ScalarFunction(Function):
    """A scalar activation: evaluates numerically through its elementary rewrite."""

    def _eval_evalf(self, prec):
        return self.rewrite(exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real


class Step(_ScalarFunction):
    """1 for x > 0, else 0: the derivative of relu, 0 at 0 as in PyTorch (Heaviside(x, 0))."""

    nargs = 1

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

    def _numpycode(self, printer):
        # SymPy prints Heaviside through Piecewise and simplify_logic, which takes seconds per call.
        return f"{printer._module_format('numpy.heaviside')}({printer._print(self.args[0])}, 0.0)"


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
        return Step(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return Piecewise((x, x > 0), (0, True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp

    def _numpycode(self, printer):
        return f"{printer._module_format('numpy.maximum')}({printer._print(self.args[0])}, 0)"


class LeakyRelu(_ScalarFunction):
    """x for x > 0, alpha x otherwise (derivative alpha at 0)."""

    nargs = 2

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x, alpha = self.args
        return alpha + (1 - alpha) * Step(x)

    def _eval_rewrite_as_exp(self, x, alpha, **kwargs):
        return Piecewise((x, x > 0), (alpha * x, True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp

    def _numpycode(self, printer):
        x, alpha = (printer._print(a) for a in self.args)
        return f"{printer._module_format('numpy.where')}(({x}) > 0, {x}, ({alpha})*({x}))"


class Elu(_ScalarFunction):
    """x for x > 0, alpha (e^x - 1) otherwise."""

    nargs = 2

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x, alpha = self.args
        return Step(x) + (1 - Step(x)) * alpha * exp(Min(x, 0))

    def _eval_rewrite_as_exp(self, x, alpha, **kwargs):
        return Piecewise((x, x > 0), (alpha * (exp(x) - 1), True))

    _eval_rewrite_as_Piecewise = _eval_rewrite_as_exp

    def _numpycode(self, printer):
        x, alpha = (printer._print(a) for a in self.args)
        where, expm1, minimum = (printer._module_format(f"numpy.{f}") for f in ("where", "expm1", "minimum"))
        return f"{where}(({x}) > 0, {x}, ({alpha})*{expm1}({minimum}({x}, 0)))"


class Sigmoid(_ScalarFunction):
    """1 / (1 + e^-x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + exp(-x))

    def _numpycode(self, printer):
        # tanh form: no overflow warning for large |x|, unlike 1/(1 + exp(-x)).
        x = printer._print(self.args[0])
        return f"(0.5 + 0.5*{printer._module_format('numpy.tanh')}(0.5*({x})))"


class NormalCdf(_ScalarFunction):
    """Phi(x), the standard normal distribution function, (1 + erf(x / sqrt 2)) / 2."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return exp(-x**2 / 2) / sqrt(2 * pi)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return (1 + erf(x / sqrt(2))) / 2

    _eval_rewrite_as_erf = _eval_rewrite_as_exp

    def _numpycode(self, printer):
        x = printer._print(self.args[0])
        return f"(0.5*(1 + {printer._module_format('scipy.special.erf')}(({x})/{2 ** 0.5!r})))"


class Gelu(_ScalarFunction):
    """x Phi(x), the exact (erf) GELU."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return NormalCdf(x) + x * exp(-x**2 / 2) / sqrt(2 * pi)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return x * (1 + erf(x / sqrt(2))) / 2

    def _numpycode(self, printer):
        x = printer._print(self.args[0])
        return f"(({x})*{NormalCdf(self.args[0])._numpycode(printer)})"


class Silu(_ScalarFunction):
    """x sigma(x), also called swish."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        x = self.args[0]
        return Sigmoid(x) * (1 + x * (1 - Sigmoid(x)))

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return x / (1 + exp(-x))

    def _numpycode(self, printer):
        x = printer._print(self.args[0])
        return f"(({x})*{Sigmoid(self.args[0])._numpycode(printer)})"


class Softplus(_ScalarFunction):
    """log(1 + e^x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return log(1 + exp(x))

    def _numpycode(self, printer):
        return f"{printer._module_format('numpy.logaddexp')}(0, {printer._print(self.args[0])})"


# ---------------------------------------------------------------------------------------------
# Matrix functions applied entry by entry
# ---------------------------------------------------------------------------------------------

def _require_matrix(value, what: str) -> MatrixExpr:
    value = sympify(value)
    if not isinstance(value, MatrixExpr):
        raise InvalidArgument(f"{what} expects a matrix expression, got {value!r} of type {type(value).__name__}")
    return value


class _KeepsEntries(MatrixExpr):
    """``M[i, j]`` of a matrix of symbolic shape stays the entry node ``MatrixElement(M, i, j)``.

    SymPy's indexing writes the entry out at once: for a softmax, with an index Sum over the
    symbolic axis inside a log, which cannot be turned back into matrix form (derive.canonical); the
    entry rule differentiates the node itself. At concrete shapes the entry is written out as before.
    """

    def __getitem__(self, key):
        if (isinstance(key, tuple) and len(key) == 2 and not any(isinstance(k, slice) for k in key)
                and not all(isinstance(d, (int, Integer)) for d in self.shape)):
            i, j = (sympify(k) for k in key)
            if self.valid_index(i, j) is not False:
                return MatrixElement(self, i, j)
        return super().__getitem__(key)


class Elementwise(_KeepsEntries):
    """``f`` applied to every entry of a matrix: ``relu(X W)``. Args are the matrix, then parameters.

    Subclasses set ``scalar`` (the scalar function) and may override :meth:`derivative` to express
    ``f'`` through the forward output. Called on a scalar, a subclass returns the scalar function, so
    ``sigmoid(x)`` works on numbers and symbols too.
    """

    scalar = None
    nparams = 0

    def __new__(cls, arg, *params):
        arg = sympify(arg)
        if len(params) != cls.nparams:
            raise InvalidArgument(f"{cls.__name__} takes 1 matrix and {cls.nparams} parameter(s), got {len(params)}")
        params = tuple(sympify(p) for p in params)
        if not isinstance(arg, MatrixExpr):
            return cls.scalar(arg, *params)
        node = MatrixExpr.__new__(cls, arg, *params)
        # SymPy computes a shape by recursing to the leaves; keeping it here makes the recursion stop at
        # every activation, which keeps deriving a deep network linear in its depth.
        node._shape = arg.shape
        return node

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def params(self) -> tuple:
        return self.args[1:]

    @property
    def shape(self):
        return self._shape

    def _entry(self, i, j, **kwargs):
        return self.scalar(self.arg._entry(i, j, **kwargs), *self.params)

    def _sympystr(self, printer):
        inner = ", ".join(printer._print(a) for a in self.args)
        return f"{type(self).__name__}({inner})"

    @classmethod
    def prime(cls) -> type[Elementwise]:
        """The matrix function ``f'`` applied entry by entry, built once per class."""
        return _prime_class(cls)

    def derivative(self, out: Basic) -> Basic:
        """``f'(A)`` as a matrix expression; ``out`` stands for ``f(A)`` so it can be reused."""
        return self.prime()(self.arg, *self.params)


_PRIMES: dict[type, type] = {}


def _prime_class(cls: type[Elementwise]) -> type[Elementwise]:
    if cls not in _PRIMES:
        x = Dummy("x")
        params = [Dummy(f"p{k}") for k in range(cls.nparams)]
        scalar_prime = Lambda((x, *params), cls.scalar(x, *params).diff(x))
        _PRIMES[cls] = type(f"{cls.__name__}_prime", (Elementwise,), {
            "scalar": staticmethod(scalar_prime), "nparams": cls.nparams, "of": cls,
            "__module__": __name__,
        })
    return _PRIMES[cls]


class relu(Elementwise):
    scalar = Relu


LEAKY_SLOPE = Rational(1, 100)


class leaky_relu(Elementwise):
    """Leaky ReLU with slope ``alpha`` below 0 (0.01 by default)."""

    scalar = LeakyRelu
    nparams = 1

    def __new__(cls, arg, alpha=LEAKY_SLOPE):
        return super().__new__(cls, arg, alpha)


class elu(Elementwise):
    scalar = Elu
    nparams = 1

    def __new__(cls, arg, alpha=1):
        return super().__new__(cls, arg, alpha)


class sigmoid(Elementwise):
    scalar = Sigmoid

    def derivative(self, out):
        return hadamard(out, one_minus(out))


class gelu(Elementwise):
    scalar = Gelu


class silu(Elementwise):
    scalar = Silu


class softplus(Elementwise):
    scalar = Softplus

    def derivative(self, out):
        return sigmoid(self.arg)


class tanh_(Elementwise):
    scalar = tanh

    def derivative(self, out):
        return one_minus(HadamardPower(out, 2))


class exp_(Elementwise):
    scalar = exp

    def derivative(self, out):
        return out


class log_(Elementwise):
    scalar = log

    def derivative(self, out):
        return HadamardPower(self.arg, -1)


# Printed and exported under the names people write; the classes keep a trailing _ only so that
# this module can still use SymPy's scalar tanh, exp and log.
for _cls, _name in ((tanh_, "tanh"), (exp_, "exp"), (log_, "log")):
    _cls.__name__ = _cls.__qualname__ = _name


def examples_axis(examples: str) -> int:
    """The axis along which examples are laid out: rows (0) or columns (1)."""
    if examples not in ("rows", "columns"):
        raise InvalidArgument(f"examples must be 'rows' or 'columns', got {examples!r}")
    return 0 if examples == "rows" else 1


class _Normalized(_KeepsEntries):
    """Common part of softmax and log_softmax: args ``(Z, axis)``, axis the one normalised over."""

    def __new__(cls, arg, axis=1):
        arg = _require_matrix(arg, cls.__name__)
        # PyTorch's habit dim=-1 means the last axis, the columns: each row is normalised
        normalised = {1: 1, -1: 1, 0: 0, -2: 0}.get(int(axis) if str(axis).lstrip("-").isdigit() else None)
        if normalised is None:
            raise InvalidArgument(f"{cls.__name__}: axis must be 1 (or -1: normalise each row) or 0 (or -2: each "
                                  f"column), got {axis!r}")
        node = MatrixExpr.__new__(cls, arg, Integer(normalised))
        node._shape = arg.shape  # see Elementwise.__new__
        return node

    @property
    def arg(self):
        return self.args[0]

    @property
    def axis(self) -> int:
        return int(self.args[1])

    @property
    def shape(self):
        return self._shape

    def _log_normalizer(self, i, j, **kwargs):
        length = self.arg.shape[self.axis]
        entry = ((lambda k: self.arg._entry(i, k, **kwargs)) if self.axis == 1
                 else (lambda k: self.arg._entry(k, j, **kwargs)))
        if isinstance(length, (int, Integer)):
            return log(sum((exp(entry(k)) for k in range(int(length))), S.Zero))
        k = Dummy("k", integer=True)
        return log(Sum(exp(entry(k)), (k, 0, length - 1)))


class softmax(_Normalized):
    """Softmax over ``axis``: 1 (default) normalises each row, rows being examples; 0 each column."""

    def __new__(cls, arg, axis=1, examples=None):
        if examples is not None:
            axis = 1 - examples_axis(examples)
        return super().__new__(cls, arg, axis)

    def _entry(self, i, j, **kwargs):
        return exp(self.arg._entry(i, j, **kwargs) - self._log_normalizer(i, j, **kwargs))


class log_softmax(_Normalized):
    """Log of :class:`softmax`, computed as ``Z - log sum exp Z`` over the same axis."""

    def __new__(cls, arg, axis=1, examples=None):
        if examples is not None:
            axis = 1 - examples_axis(examples)
        return super().__new__(cls, arg, axis)

    def _entry(self, i, j, **kwargs):
        return self.arg._entry(i, j, **kwargs) - self._log_normalizer(i, j, **kwargs)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

class Loss(Expr):
    """A scalar loss ``scale * sum of per-entry terms`` of a prediction and a target.

    Args are ``(prediction, target, scale)`` (and an axis for softmax cross-entropy). The
    reduction (mean over examples, a 1/2 factor, a plain sum) is all in ``scale``.
    """

    is_commutative = True
    is_real = True

    def __new__(cls, prediction, target, scale, *extra):
        prediction = _require_matrix(prediction, f"{cls.__name__} (prediction)")
        target = _require_matrix(target, f"{cls.__name__} (target)")
        if prediction.shape != target.shape:
            raise ShapeError(
                f"{cls.__name__}: prediction {prediction} has shape {_shape(prediction)} but target "
                f"{target} has shape {_shape(target)}")
        return Expr.__new__(cls, prediction, target, sympify(scale), *map(sympify, extra))

    @property
    def prediction(self):
        return self.args[0]

    @property
    def target(self):
        return self.args[1]

    @property
    def scale(self):
        return self.args[2]

    def _terms(self, i, j):
        raise NotImplementedError

    def doit(self, **hints):
        """The explicit sum, once the shapes are concrete; otherwise the loss unchanged."""
        rows, cols = self.prediction.shape
        if not all(isinstance(d, (int, Integer)) for d in (rows, cols)):
            return self
        total = sum((self._terms(i, j) for i in range(rows) for j in range(cols)), S.Zero)
        return self.scale * total

    def target_constraints(self, target_entries) -> dict:
        """Substitutions that make an explicit target valid (none for most losses)."""
        return {}

    def _sympystr(self, printer):
        return f"{type(self).__name__}({', '.join(printer._print(a) for a in self.args)})"


def _shape(expr) -> str:
    return f"{expr.shape[0]} x {expr.shape[1]}"


class SquaredError(Loss):
    """``scale * sum (Yhat - Y)^2``."""

    def _terms(self, i, j):
        return (self.prediction._entry(i, j) - self.target._entry(i, j)) ** 2


class BinaryCrossEntropy(Loss):
    """``-scale * sum [Y log P + (1 - Y) log (1 - P)]``, P holding probabilities."""

    def _terms(self, i, j):
        p, y = self.prediction._entry(i, j), self.target._entry(i, j)
        return -(y * log(p) + (1 - y) * log(1 - p))


class SoftmaxCrossEntropy(Loss):
    """``-scale * sum Y ⊙ log_softmax(Z)`` on logits Z, for any target Y.

    Args are ``(Z, Y, scale, axis, targets_sum_to_one)`` with ``axis`` the one softmax normalises
    over; ``targets_sum_to_one`` (true or false) records the user's declaration that each example's
    target sums to 1 (one-hot, label-smoothed), under which the gradient is ``s (softmax(Z) - Y)``.
    """

    def __new__(cls, prediction, target, scale, axis, targets_sum_to_one=False):
        return super().__new__(cls, prediction, target, scale, axis, S.true if targets_sum_to_one else S.false)

    @property
    def axis(self) -> int:
        return int(self.args[3])

    @property
    def targets_sum_to_one(self) -> bool:
        return bool(self.args[4])

    def probabilities(self):
        return softmax(self.prediction, self.axis)

    def _terms(self, i, j):
        return -self.target._entry(i, j) * log_softmax(self.prediction, self.axis)._entry(i, j)

    def target_constraints(self, target_entries):
        # Only where declared: the explicit check then imposes it by writing the last class's entry
        # as 1 minus the others, so the closed form s (P - Y) is compared where it holds.
        if not self.targets_sum_to_one:
            return {}
        rows, cols = target_entries.shape
        if self.axis == 1:
            return {target_entries[i, cols - 1]: 1 - sum(target_entries[i, j] for j in range(cols - 1))
                    for i in range(rows)}
        return {target_entries[rows - 1, j]: 1 - sum(target_entries[i, j] for i in range(rows - 1))
                for j in range(cols)}


def _scale(prediction: MatrixExpr, reduction: str, examples: str, half: bool = False):
    prediction = _require_matrix(prediction, "a loss")
    if reduction == "mean":
        scale = 1 / prediction.shape[examples_axis(examples)]
    elif reduction == "sum":
        scale = S.One
    else:
        raise InvalidArgument(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return scale / 2 if half else scale


def mse(prediction, target, *, half: bool = False, reduction: str = "mean", examples: str = "rows"):
    """Squared error summed over each example's entries, averaged over examples (``reduction="mean"``).

    ``half=True`` puts the customary 1/2 in front: ``1/(2N) sum (Yhat - Y)^2``.
    """
    return SquaredError(prediction, target, _scale(prediction, reduction, examples, half))


def bce(probabilities, target, *, reduction: str = "mean", examples: str = "rows"):
    """Binary cross-entropy of probabilities (for example a sigmoid's output), averaged over examples."""
    return BinaryCrossEntropy(probabilities, target, _scale(probabilities, reduction, examples))


def cross_entropy(logits, target, *, reduction: str = "mean", examples: str = "rows",
                  targets_sum_to_one: bool = False):
    """Softmax cross-entropy ``-s sum Y log softmax(Z)`` of logits against any targets, averaged over examples.

    Its gradient is ``s (softmax(Z) ⊙ (Y 1 1^T) - Y)`` (each example's softmax weighted by the sum of
    its target). ``targets_sum_to_one=True`` declares that every example's target sums to 1 (one-hot
    or label-smoothed targets): the gradient is then the familiar ``s (softmax(Z) - Y)``, ``verify``
    compares it where that holds, and the generated NumPy code checks it on its inputs.
    """
    if not isinstance(targets_sum_to_one, bool):
        raise InvalidArgument(f"targets_sum_to_one must be True or False, got {targets_sum_to_one!r}")
    scale = _scale(logits, reduction, examples)
    axis = 1 - examples_axis(examples)
    if targets_sum_to_one:
        _require_normalizable(sympify(target), axis)
    return SoftmaxCrossEntropy(logits, target, scale, Integer(axis), targets_sum_to_one)


def _require_normalizable(target: Basic, axis: int) -> None:
    """A declared target must be one whose examples the checks can make sum to 1: a matrix of targets
    (Y, or Y.T in the other convention; drawn on the simplex), a softmax over the same axis (it sums
    to 1 by itself) or constant entries that do. Of 2 Y, say, they can do neither, and the numeric
    check would report the declared gradient s (softmax(Z) - 2 Y) as derive's mistake."""
    inner, along = (target.arg, 1 - axis) if isinstance(target, Transpose) else (target, axis)
    if type(inner) is MatrixSymbol or (isinstance(inner, softmax) and inner.axis == along):
        return
    if isinstance(target, MatrixBase) and not target.free_symbols:
        sums = target * ones(target.cols, 1) if axis == 1 else ones(1, target.rows) * target
        if all(total == 1 for total in sums):
            return
        raise InvalidArgument(f"cross_entropy(..., targets_sum_to_one=True): the constant target {target.tolist()} "
                              f"has examples that do not sum to 1 (their sums: {list(sums)})")
    raise InvalidArgument(
        f"cross_entropy(..., targets_sum_to_one=True): the target {target} is not a matrix of targets (Y, or Y.T "
        "with examples in columns) nor a softmax over each example, so derive can neither check that each "
        "example's sums to 1 nor draw targets that do; declare it on the matrix of targets, or leave "
        "targets_sum_to_one out (the gradient for any target is then right)")
