"""Second order: the R-operator pass (forward over reverse) and the :class:`Hvp` value it produces.

Pearlmutter's R-operator is the directional derivative R{.} = d/dt (.)(theta + t V) along the
parameters' directions V. The reverse sweep's results are expressions built of the same operations as
the forward pass (``dL/dH ⊙ relu'(Z)``, ``X^T dL/dZ``), so one forward-mode pass of the rule table's
tangent rules over every binding of the derivation, forward quantities first and then the upstream
gradients in the order they are evaluated, gives R{Z} and R{dL/dZ} for every named quantity, and
``hvp[P] = R{dL/dP}`` (the Hessian of the loss in all the parameters jointly, applied to the stacked
directions). No Kronecker product or vectorisation appears: the tangent rules are matrix products,
Hadamard products and sums, as the pullbacks are.

Nothing here knows any particular operation (they are the table's, :mod:`.rules`) or formats text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sympy import Basic, MatrixExpr, MatrixSymbol, S, ZeroMatrix

from ..errors import InvalidParameter, ShapeError, UnsupportedOperation
from .algebra import substitute
from .graph import topological_order
from .rules import is_zero, rule_for
from .shapes import namesakes
from .symbols import LEAVES, GradientTangent, LossGradient, Tangent, shape_text

__all__ = ["Hvp", "TangentStep", "check_directions", "tangent", "tangent_pass"]


@dataclass(frozen=True)
class TangentStep:
    """One named tangent quantity of the R-pass: ``symbol = definition``."""

    symbol: Tangent | GradientTangent   # R{Z_1} or R{dL/dZ_1}
    of: Basic                           # the quantity it is the directional derivative of: Z_1, dL/dZ_1
    definition: Basic                   # in names, earlier tangents and the directions
    shape: tuple


@dataclass(frozen=True, eq=False)
class Hvp(Mapping):
    """Hessian-vector products of a derivation along ``directions`` (param -> its direction V_P).

    ``steps`` are the tangent quantities in evaluation order (each uses the derivation's bindings,
    earlier steps and the directions), ``compact[P]`` is R{dL/dP} written with them, ``closed[P]`` the
    same in the network's own symbols and the directions only: plain SymPy, as ``g[P]`` is. It reads
    as the mapping ``{param: closed form}`` (by parameter or by name).
    """

    directions: dict
    steps: tuple[TangentStep, ...]
    compact: dict
    closed: dict

    @property
    def bindings(self) -> tuple[tuple[Basic, Basic], ...]:
        """(tangent symbol, compact definition) in evaluation order, after the derivation's own bindings."""
        return tuple((step.symbol, step.definition) for step in self.steps)

    def __getitem__(self, param) -> Basic:
        for p, form in self.closed.items():
            if p == param or p.name == param:
                return form
        raise KeyError(f"{param} is not one of the parameters {', '.join(p.name for p in self.closed)}")

    def __iter__(self) -> Iterator:
        return iter(self.closed)

    def __len__(self) -> int:
        return len(self.closed)


def tangent(expr: Basic, out: Basic, known: Mapping[Basic, Basic]) -> Basic | None:
    """The directional derivative of ``expr``, or None where it does not move.

    ``known`` maps the leaves that move (a parameter to its direction, a name to its tangent's symbol)
    to their tangents; ``out`` is the name of ``expr`` itself where it has one (a rule may reuse it,
    sigmoid' = S ⊙ (1 - S)). Each node gets its tangent from its rule's ``tangent``, once (a DAG walk).
    """
    tangents: dict[Basic, Basic | None] = {}
    for node in topological_order(expr):
        if node in known:
            tangents[node] = known[node]
            continue
        if isinstance(node, LEAVES) or not node.args:
            tangents[node] = None
            continue
        moving = [tangents.get(a) for a in node.args]
        if all(t is None for t in moving):
            tangents[node] = None
            continue
        rule = rule_for(node)
        if rule.tangent is None:
            raise UnsupportedOperation(f"the {rule.name} {node} has no tangent rule, so its second derivative is "
                                       "not known")
        zeros = [_zero_like(a) if t is None else t for a, t in zip(node.args, moving)]
        result = rule.tangent(node, out if node is expr else node, zeros)
        tangents[node] = None if is_zero(result) else result
    return tangents[expr]


def _zero_like(arg: Basic) -> Basic:
    return ZeroMatrix(*arg.shape) if isinstance(arg, MatrixExpr) else S.Zero


def tangent_pass(bindings, compact_gradients: Mapping, closed_names: Mapping, directions: Mapping) -> Hvp:
    """The R-pass over a derivation: its ``bindings`` in order, then each parameter's compact gradient.

    ``directions`` maps every parameter that moves to its direction (the others stay put); the tangent
    of a binding that moves gets a name, and only those the HVPs read are kept.
    """
    known: dict[Basic, Basic] = dict(directions)
    steps: list[TangentStep] = []
    for symbol, definition in bindings:
        if definition == symbol:   # a quantity whose gradient is its consumer's, bound to that name again
            continue
        moved = tangent(definition, symbol, known)
        if moved is None:
            continue
        cls = GradientTangent if isinstance(symbol, LossGradient) else Tangent
        known[symbol] = cls(symbol.name, *symbol.shape)
        steps.append(TangentStep(known[symbol], symbol, moved, symbol.shape))
    compact = {}
    for param, gradient in compact_gradients.items():
        moved = None if gradient is None else tangent(gradient, gradient, known)
        compact[param] = ZeroMatrix(*param.shape) if moved is None else moved
    steps = _needed(steps, list(compact.values()))
    closed_map = dict(closed_names)
    for step in steps:
        closed_map[step.symbol] = substitute(step.definition, closed_map)
    closed = {p: substitute(form, closed_map) for p, form in compact.items()}
    return Hvp(dict(directions), tuple(steps), compact, closed)


def _needed(steps: list[TangentStep], results: list[Basic]) -> list[TangentStep]:
    """The steps the results read, directly or through one another, in their order."""
    by_symbol = {step.symbol: step for step in steps}
    needed: set[Basic] = set()
    pending = list(results)
    while pending:
        for symbol in pending.pop().atoms(Tangent, GradientTangent):
            if symbol in by_symbol and symbol not in needed:
                needed.add(symbol)
                pending.append(by_symbol[symbol].definition)
    return [step for step in steps if step.symbol in needed]


def check_directions(directions: Mapping, params, taken: set[str]) -> dict[MatrixSymbol, MatrixSymbol]:
    """``{param: direction}`` with every direction a MatrixSymbol of its parameter's shape, named apart
    from the network's matrices and the derivation's names (``taken``); ``params`` maps a given key to the
    parameter (it raises for an unknown one). One direction may serve several parameters of its shape
    (the stacked direction (V, V)), but two different matrices may not share a name."""
    if not isinstance(directions, Mapping):
        raise InvalidParameter(f"hvp: directions must be a mapping {{param: V}} from parameters to MatrixSymbols of "
                               f"their shapes, not a {type(directions).__name__}")
    checked: dict[MatrixSymbol, MatrixSymbol] = {}
    named: dict[str, tuple[MatrixSymbol, MatrixSymbol]] = {}   # a direction's name -> (it, its first parameter)
    for key, direction in directions.items():
        param = params(key)
        if not isinstance(direction, MatrixSymbol):
            raise ShapeError(f"hvp: the direction for {param.name} ({shape_text(param)}) must be a MatrixSymbol of "
                             f"that shape, not {direction!r} of type {type(direction).__name__}")
        if direction.shape != param.shape:
            raise ShapeError(f"hvp: the direction {direction.name} is {shape_text(direction)} but the parameter "
                             f"{param.name} is {shape_text(param)}{namesakes(direction, param)}")
        if direction.name in taken:
            raise InvalidParameter(f"hvp: the direction for {param.name} is named {direction.name}, already the name "
                                   "of a matrix of the network or of a quantity of its derivation; give it a name of "
                                   "its own")
        if param in checked:
            raise InvalidParameter(f"hvp: {param.name} is given two directions")
        first = named.setdefault(direction.name, (direction, param))
        if first[0] != direction:   # evaluated by name, the two would be one matrix of two shapes
            raise InvalidParameter(f"hvp: the directions for {first[1].name} and {param.name} are both named "
                                   f"{direction.name} but are different matrices ({shape_text(first[0])} and "
                                   f"{shape_text(direction)}); give each its own name")
        checked[param] = direction
    return checked
