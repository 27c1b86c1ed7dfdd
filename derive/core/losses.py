"""The losses: squared error, binary cross-entropy and softmax cross-entropy, scalar SymPy
expressions of a prediction and a target, with the reduction (a mean over the examples, a 1/2, a
plain sum) in one scale factor.
"""

from __future__ import annotations

from sympy import Basic, Expr, Integer, MatrixBase, MatrixExpr, MatrixSymbol, S, Transpose, log, ones, sympify

from ..errors import InvalidArgument, ShapeError
from .elementwise import _require_matrix
from .softmax import examples_axis, log_softmax, softmax

__all__ = ["BinaryCrossEntropy", "Loss", "SoftmaxCrossEntropy", "SquaredError", "bce", "cross_entropy", "mse"]


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
