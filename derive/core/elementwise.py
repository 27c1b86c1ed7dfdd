"""Functions applied entry by entry, and the one record that says everything about an activation.

An :class:`Activation` holds, in one place, what every part of derive needs to know about one
activation: its scalar SymPy function (which knows its derivative), the reference formula the
independent evaluator uses, its LaTeX name, the names the hand grammar reads, its NumPy forms for
generated code, the PyTorch and JAX functions the bench compares with. :func:`activation` registers
a record and returns its matrix function, a subclass of :class:`Elementwise`; adding an activation
is one call (see :mod:`derive.core.activations`), and the printers, the grammar, the truth and the
bench find it through :func:`activations` or a class's ``record``.

The record is data: NumPy forms are format strings that only the NumPy printer reads, and the
reference formula is a NumPy function that only the truth reads, so the check of generated code
never shares the printer's spelling.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from sympy import Basic, Dummy, Integer, Lambda, MatrixExpr, ZeroMatrix, sympify
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import InvalidArgument, UnsupportedOperation

__all__ = ["Activation", "Elementwise", "activation", "activations", "derivative_order", "record_of", "scalar_record"]


@dataclass(frozen=True)
class Activation:
    """Everything derive knows about one activation ``f``.

    ``scalar`` is f on one number: a SymPy function class that knows its derivative (``Relu``), SymPy's
    own (``tanh``), or any callable building an elementary expression (``lambda x: x**3 + x``).
    ``numpy`` and ``numpy_prime`` are f(A) and f'(A) for generated code, format strings of the
    argument ``{a}`` and the parameters ``{p0}`` ... that keep the argument's dtype; without
    ``numpy_prime`` the scalar derivative is printed. ``reference`` is f in NumPy from its textbook
    definition (what :mod:`derive.core.truth` evaluates, and what ``lambdify`` calls); it is needed
    only where ``scalar`` is a class of derive's own. ``derivative(node, out)`` writes f'(A) as a
    matrix expression that may reuse the output ``out`` (``sigmoid' = S ⊙ (1 - S)``); without it f'
    is applied entry by entry.
    """

    name: str                                   # what users write, relu(A); the matrix class's name
    scalar: Callable
    latex: str                                  # how a sheet writes f: r"\operatorname{relu}"
    numpy: str
    numpy_prime: str | None = None
    reference: Callable | None = None
    aliases: tuple[str, ...] = ()               # other names the hand grammar reads: ReLU, σ ...
    params: tuple[tuple[str, object], ...] = ()  # (name, default) of each parameter: (("alpha", 1),)
    derivative: Callable | None = None
    # G ⊙ f'(A) made in G's own array: (operator, form of {a} and {target}, form reading the
    # forward's cached f(A) as {value}, or None)
    numpy_in_place: tuple[str, str, str | None] | None = None
    numpy_mask: str | None = None               # f'(A) as a boolean mask of {a} (relu': {a} > 0)
    positive_argument: bool = False             # f is defined for positive arguments only (log)
    torch: Callable | None = None               # the bench: torch module -> f
    jax: Callable | None = None                 # the bench: jax module -> f
    # what a sheet says f and f' are, on a number x, in the notes' notation ("x_+ = \max(0, x)")
    definition: str = ""
    slope: str = ""
    latex_prime: str = ""                       # f'(A) on a sheet when not f'(A): \mathbb{1}[{a} > 0]

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


_REGISTRY: dict[str, Activation] = {}
_CLASSES: dict[str, type] = {}


def activation(record: Activation, module: str | None = None) -> type[Elementwise]:
    """Register ``record`` and return its matrix function (``relu = activation(Activation("relu", ...))``),
    a class of ``module`` (by default the caller's)."""
    if record.name in _REGISTRY and _REGISTRY[record.name] != record:
        raise InvalidArgument(f"an activation named {record.name!r} is already registered")
    _REGISTRY[record.name] = record
    if record.reference is not None and isinstance(record.scalar, type) and record.scalar.__module__.startswith("derive"):
        # lambdify(..., "numpy") finds a function it has no printer for by its _imp_
        record.scalar._imp_ = staticmethod(record.reference)
    module = module or sys._getframe(1).f_globals.get("__name__", __name__)
    cls = type(record.name, (Elementwise,), {"record": record, "__module__": module,
                                             "__doc__": f"{record.name} applied entry by entry."})
    _CLASSES[record.name] = cls
    return cls


def activations() -> dict[str, type[Elementwise]]:
    """Every registered activation's matrix function, by name, in the order registered."""
    return dict(_CLASSES)


def record_of(cls: type) -> tuple[Activation, bool]:
    """The record of an activation's matrix class (or of its derivative's), and whether it is f'.

    A second derivative f'' (met only in second-order results) is refused here, so that a printer that
    knows f and f' only fails loudly instead of printing f'' as f': it reads :func:`derivative_order`."""
    original = getattr(cls, "of", None)
    if derivative_order(cls) > 1:
        raise UnsupportedOperation(f"{cls.__name__}, the derivative of order {derivative_order(cls)} of "
                                   f"{original.__name__}, has no record of its own; read derivative_order(cls)")
    return (original or cls).record, original is not None


def derivative_order(cls: type) -> int:
    """0 for an activation f, 1 for its f', 2 for f'' ..."""
    return getattr(cls, "order", 0)


def scalar_record(function: type) -> Activation | None:
    """The record whose scalar function is ``function`` (``Relu``), if derive defines it."""
    for cls in _CLASSES.values():
        if cls.record.scalar is function and getattr(function, "__module__", "").startswith("derive"):
            return cls.record
    return None


def _require_matrix(value, what: str) -> MatrixExpr:
    value = sympify(value)
    if not isinstance(value, MatrixExpr):
        raise InvalidArgument(f"{what} expects a matrix expression, got {value!r} of type {type(value).__name__}")
    return value


class _KeepsEntries(MatrixExpr):
    """``M[i, j]`` of a matrix of symbolic shape stays the entry node ``MatrixElement(M, i, j)``.

    SymPy's indexing writes the entry out at once: for a softmax, with an index Sum over the
    symbolic axis inside a log, which cannot be turned back into matrix form (derive.core.canonical);
    the entry rule differentiates the node itself. At concrete shapes the entry is written out as before.
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

    Each subclass carries its :class:`Activation` as ``record``. Called on a scalar it returns the
    scalar function, so ``sigmoid(x)`` works on numbers and symbols too.
    """

    record: Activation = None
    entrywise = True   # derive.core.algebra pushes slices through it

    def __new__(cls, arg, *params, **named):
        arg = sympify(arg)
        params = cls._bind(params, named)
        if not isinstance(arg, MatrixExpr):
            return cls.scalar(arg, *params)
        node = MatrixExpr.__new__(cls, arg, *params)
        # SymPy computes a shape by recursing to the leaves; keeping it here makes the recursion stop at
        # every activation, which keeps deriving a deep network linear in its depth.
        node._shape = arg.shape
        return node

    @classmethod
    def _bind(cls, params: tuple, named: dict) -> tuple:
        spec = cls.record.params
        if len(params) > len(spec) or set(named) - {name for name, _ in spec}:
            raise InvalidArgument(f"{cls.__name__} takes 1 matrix and {len(spec)} parameter(s) "
                                  f"({', '.join(n for n, _ in spec) or 'none'}), got {len(params) + len(named)}")
        values = list(params) + [named.get(name, default) for name, default in spec[len(params):]]
        return tuple(sympify(v) for v in values)

    @classmethod
    def scalar(cls, x, *params):
        return cls.record.scalar(x, *params)

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
        if self.record.derivative is not None:
            return self.record.derivative(self, out)
        return self.prime()(self.arg, *self.params)


_PRIMES: dict[type, type] = {}


class _Derivative(Elementwise):
    """``f'`` applied entry by entry: its scalar is the derivative SymPy takes of ``f``."""

    of: type[Elementwise] = None   # the activation f itself, whatever the order
    order: int = 1

    def __new__(cls, arg, *params):
        return super().__new__(cls, arg, *params)

    @classmethod
    def _bind(cls, params: tuple, named: dict) -> tuple:
        return cls.of._bind(params, named)

    @classmethod
    def scalar(cls, x, *params):
        return cls._scalar_prime(x, *params)

    def derivative(self, out: Basic) -> Basic:
        """The next derivative; a zero matrix where it vanishes identically (relu'' = leaky_relu'' = 0:
        their slopes are constant on each side of 0, and the Dirac delta at 0 plays no part, as in
        PyTorch's double backward)."""
        prime = self.prime()
        if prime._scalar_prime.expr == 0:
            return ZeroMatrix(*self.shape)
        return prime(self.arg, *self.params)


def _prime_class(cls: type[Elementwise]) -> type[Elementwise]:
    if cls not in _PRIMES:
        x = Dummy("x")
        original = getattr(cls, "of", None) or cls
        params = [Dummy(f"p{k}") for k in range(len(original.record.params))]
        scalar_prime = Lambda((x, *params), sympify(cls.scalar(x, *params)).diff(x))
        order = derivative_order(cls) + 1
        _PRIMES[cls] = type(f"{original.__name__}_{'prime' if order == 1 else f'prime{order}'}", (_Derivative,), {
            "_scalar_prime": staticmethod(scalar_prime), "of": original, "order": order, "__module__": __name__,
        })
    return _PRIMES[cls]
