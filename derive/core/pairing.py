"""The pairing <G, Y> = tr(G^T Y) of a layer's output Y with its upstream gradient G.

A layer's vector-Jacobian products are the gradients of this scalar (:func:`derive.vjp`). It is
one node of derive's own, not the product ``Trace(G.T*Y)`` SymPy would build: that product's
rule passes an identity through a made-up H x H matrix, where the pairing's rule hands Y the
upstream gradient G itself. The declared scalar (what the truth expands and evaluates) stays SymPy's
``Trace(G.T*Y)``.
"""

from __future__ import annotations

from sympy import Add, Expr, Integer, MatrixExpr, Trace
from sympy.matrices import MatrixBase

__all__ = ["Pairing"]


class Pairing(Expr):
    """``<G, Y>``, the sum of the entries of G ⊙ Y; args are ``(G, Y)``, of one shape."""

    is_commutative = True
    is_real = True

    def __new__(cls, upstream: MatrixExpr, output: MatrixExpr):
        if isinstance(upstream, MatrixBase) and isinstance(output, MatrixBase):   # explicit: the sum itself
            return Add(*[u * o for u, o in zip(upstream, output)])
        return Expr.__new__(cls, upstream, output)

    def doit(self, **hints):
        """The sum of G_ij Y_ij at concrete shapes, SymPy's tr(G^T Y) otherwise: how the truth reads it."""
        rows, cols = self.output.shape
        if all(isinstance(d, (int, Integer)) for d in (rows, cols)):
            return Add(*[self.upstream[i, j] * self.output[i, j] for i in range(rows) for j in range(cols)])
        return Trace(self.upstream.T * self.output)

    @property
    def upstream(self) -> MatrixExpr:
        return self.args[0]

    @property
    def output(self) -> MatrixExpr:
        return self.args[1]

    def _sympystr(self, printer):
        return f"<{printer._print(self.upstream)}, {printer._print(self.output)}>"
