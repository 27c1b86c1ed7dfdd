"""The symbols derive adds to SymPy's: names of intermediate quantities and of their gradients.

An :class:`Intermediate` (``Z_1``) stands for a named quantity of the forward pass, a
:class:`LossGradient` (``dL/dZ_1``) for the gradient of the loss with respect to a named quantity or
a parameter; both are MatrixSymbols, so every closed form stays plain SymPy. ``LEAVES`` are the
nodes the graph does not look inside.
"""

from __future__ import annotations

from sympy import Atom, Basic, Identity, MatrixExpr, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices import MatrixBase

__all__ = ["LEAVES", "GradientTangent", "Intermediate", "LossGradient", "Tangent", "shape_text"]

# Nodes without parts the graph follows: matrices by name, constant matrices, numbers and symbols.
LEAVES = (MatrixSymbol, OneMatrix, ZeroMatrix, Identity, MatrixBase, Atom)


class Intermediate(MatrixSymbol):
    """The name of an intermediate quantity (``Z_1``), standing for its definition."""


class LossGradient(MatrixSymbol):
    """dL/dQ for a named quantity or parameter Q; its ``name`` is Q's name. (Not SymPy's ``Adjoint``,
    the conjugate transpose: printers dispatch on the class name.)"""

    def _sympystr(self, printer):
        return f"dL/d{self.name}"


class Tangent(MatrixSymbol):
    """R{Q}, the directional derivative of a named forward quantity Q along the parameters' directions
    (Pearlmutter's R-operator); its ``name`` is Q's name."""

    def _sympystr(self, printer):
        return f"R{{{self.name}}}"


class GradientTangent(MatrixSymbol):
    """R{dL/dQ}, the directional derivative of the upstream gradient dL/dQ; its ``name`` is Q's name."""

    def _sympystr(self, printer):
        return f"R{{dL/d{self.name}}}"


def shape_text(expr: Basic) -> str:
    """``"N x 3"``, or ``"scalar"``: a shape in an error message."""
    return f"{expr.shape[0]} x {expr.shape[1]}" if isinstance(expr, MatrixExpr) else "scalar"
