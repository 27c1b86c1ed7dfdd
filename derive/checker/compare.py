"""Comparing a hand formula's tree with the derived gradient's: numerically at random points
always, symbolically where SymPy can; the first differing entry as a counterexample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sympy import (
    Basic,
    Integer,
    Mul,
    Symbol,
)
from sympy.matrices import MatrixBase

from ..core.explicit import simplifies_to_zero, variables
from ..core.softmax import log_softmax, softmax
from ..core.symbols import Intermediate, LossGradient
from .formula import Node, is_scalar
from .meaning import SYMBOLIC_LIMIT, ExplicitBackend, NumpyBackend, SymbolicTooLarge, evaluate
from .network import SYMBOLIC_COST, NetworkView, entries_of
from .results import Counterexample

TOLERANCE = 1e-9          # relative error under which two numeric gradients are equal



# --- comparing two explicit matrices ----------------------------------------------------------------

@dataclass
class Comparison:
    equal: bool
    method: str
    counterexample: Counterexample | None = None


def _close(value: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Entry by entry: equal up to TOLERANCE of the larger entries; inf or nan (a division by 0) equals nothing."""
    finite = np.isfinite(value) & np.isfinite(target)
    scale = max(float(np.max(np.abs(np.where(finite, target, 0.0)))),
                float(np.max(np.abs(np.where(finite, value, 0.0)))), 1e-30)
    with np.errstate(invalid="ignore"):
        return finite & (np.abs(value - target) <= TOLERANCE * scale)


def compare(net: NetworkView, hand: Node, against: Node, points: list[dict], symbolic: bool = True) -> Comparison:
    """Numerically at every point (always); symbolically too when the numbers agree."""
    for point in points:
        h, d = net.numeric(hand, point), net.numeric(against, point)
        if h.shape != d.shape:
            return Comparison(False, "numeric")
        wrong = ~_close(h, d)
        if wrong.any():
            i, j = (int(k) for k in np.argwhere(wrong)[0])
            return Comparison(False, "numeric", _counterexample(net, hand, against, point, (i, j), h, d))
    if not symbolic or not net.symbolic:
        return Comparison(True, "numeric")
    try:
        exact = all(simplifies_to_zero(a - b) for a, b in zip(net.explicit(hand), net.explicit(against)))
    except SymbolicTooLarge:
        return Comparison(True, "numeric")
    return Comparison(True, "symbolic" if exact else "numeric")


def _counterexample(net, hand, against, point, entry, h, d) -> Counterexample:
    i, j = entry
    too_large = Symbol(f"(too large to show: the loss written out at these dims takes over {SYMBOLIC_COST} "
                       "operations)")
    try:
        # one entry written out, not the whole matrix (a wrong answer on an MLP: 1 s of the check)
        written = ExplicitBackend(net) if net.symbolic else None
        hand_entry, derived_entry = ((_constrained(_entry(hand, i, j, written), net),
                                      _constrained(_entry(against, i, j, written), net)) if net.symbolic
                                     else (too_large, too_large))
    except SymbolicTooLarge as error:
        hand_entry = derived_entry = Symbol(f"(too large to show: {error.args[0]} alone has entries of over "
                                            f"{SYMBOLIC_LIMIT} operations at these dims)")
    # the readable entries keep named quantities, and on a large network named gradients too
    opened = ExplicitBackend(net, (Intermediate,) if net.symbolic else (Intermediate, LossGradient))
    named_hand, named_derived = (_entry(t, i, j, opened).xreplace(net.constraints) for t in (hand, against))
    entries = entries_of(point, net)
    used = variables(hand_entry) | variables(derived_entry)
    shown = {k: v for k, v in entries.items() if k in used} or entries
    values = NumpyBackend(net, point)
    named_used = sorted(variables(named_hand) | variables(named_derived), key=str)
    named_point = {e: float(values.leaf(opened.opened[e.args[0]])[int(e.args[1]), int(e.args[2])])
                   if e.args[0] in opened.opened else entries.get(e, float("nan")) for e in named_used}
    return Counterexample(entry, hand_entry, derived_entry, shown, float(h[i, j]), float(d[i, j]),
                          named_hand, named_derived, named_point)


def _constrained(entry: Basic, net) -> Basic:
    """An explicit entry with the targets' constraints applied, as ``net.explicit`` applies them."""
    return entry.xreplace(net.constraints) if net.constraints else entry


def _entry(tree: Node, i: int, j: int, backend: ExplicitBackend) -> Basic:
    """Entry (i, j) of a tree's explicit value (a report shows one entry)."""
    value = _part(tree, [i], [j], backend)
    return value[0, 0] if isinstance(value, MatrixBase) else value


def _part(tree: Node, rows: list | None, cols: list | None, backend: ExplicitBackend):
    """The rows and columns (None: all) of a tree's explicit value. Through transposes, sums,
    Hadamard products, products, divisions by a scalar, powers and activations only the entries
    asked for are written out: SymPy spends its time multiplying whole matrices of long entries."""
    kind = tree.kind
    if is_scalar(tree):
        return evaluate(tree, backend)
    if kind == "T":
        return _part(tree.args[0], cols, rows, backend).T
    if kind == "neg":
        return -_part(tree.args[0], rows, cols, backend)
    if kind == "pow":
        return backend.power(_part(tree.args[0], rows, cols, backend), tree.value)
    if kind == "div" and is_scalar(tree.args[1]):
        return backend.divide(_part(tree.args[0], rows, cols, backend), evaluate(tree.args[1], backend))
    if kind in ("sum", "had"):
        combine = backend.add if kind == "sum" else backend.hadamard
        signs = tree.value if kind == "sum" else [1] * len(tree.args)
        total = None
        for term, sign in zip(tree.args, signs):
            value = backend.scale(Integer(sign), _part(term, rows, cols, backend))
            total = value if total is None else combine(total, value)
        return total
    if kind == "call" and tree.value[0].cls is not None and tree.value[0].cls not in (softmax, log_softmax):
        function, prime = tree.value
        params = [evaluate(a, backend) for a in tree.args[1:]]
        return backend.apply(function.cls, prime, [_part(tree.args[0], rows, cols, backend), *params])
    ones = any(a.kind == "ones" or a.kind == "T" and a.args[0].kind == "ones" or a.kind == "num" and a.value == 1
               for a in tree.args)   # a ones vector takes its length from its neighbour: written out whole
    if kind == "prod" and not ones:
        scalar = Mul(*(evaluate(a, backend) for a in tree.args if is_scalar(a)))
        matrices = [a for a in tree.args if not is_scalar(a)]
        if len(matrices) == 1:
            return backend.scale(scalar, _part(matrices[0], rows, cols, backend))
        product = _part(matrices[0], rows, None, backend)
        for middle in matrices[1:-1]:
            product = backend.matmul(product, evaluate(middle, backend))
        return backend.scale(scalar, backend.matmul(product, _part(matrices[-1], None, cols, backend)))
    value = evaluate(tree, backend)
    if not isinstance(value, MatrixBase):
        return value
    return value.extract(list(range(value.rows)) if rows is None else rows,
                         list(range(value.cols)) if cols is None else cols)
