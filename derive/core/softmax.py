"""Softmax and log-softmax over the rows (rows are examples) or the columns of a matrix.

Both are SymPy matrix expressions ``(Z, axis)``, axis the one normalised over; their entries are
written out as SymPy defines them, so the explicit expansion (the truth) needs nothing of derive.
"""

from __future__ import annotations

from sympy import Dummy, Integer, MatrixExpr, S, Sum, exp, log

from ..errors import InvalidArgument
from .elementwise import _KeepsEntries, _require_matrix

__all__ = ["examples_axis", "log_softmax", "softmax"]


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


