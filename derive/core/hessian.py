"""The Hessian of a vector parameter read off its Hessian-vector product.

``H V`` is linear in the direction V (n x 1), so the n x n matrix H = [H e_1 ... H e_n] is the HVP with
V replaced by the identity, read through each operation on V's path: a product ``A E(V)`` has the
columns ``A E(e_k)``; a Hadamard product with a constant column c, ``c ⊙ E(V)``, has ``(c 1^T) ⊙ E(e_k)``
(so logistic regression's Hessian comes out as ``X^T ((p ⊙ (1 - p)) 1^T ⊙ X) / N``, never
``diag(p ⊙ (1 - p))``); a scalar ``s(V)`` times a column c has the columns ``c s(e_k)``. A 1 x n
parameter is read by rows the same way. A form met on V's path that is neither raises, naming it.
"""

from __future__ import annotations

from sympy import (
    Add,
    Basic,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixExpr,
    Mul,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import UnsupportedOperation
from .algebra import hadamard, mat_add, mat_mul, split_scalar, transpose

__all__ = ["read_off"]


def read_off(hvp: Basic, direction: Basic) -> Basic:
    """The n x n matrix H with ``hvp = H V`` (V = ``direction``, n x 1) or ``hvp = V H`` (V 1 x n)."""
    reader = _Reader(direction)
    if isinstance(hvp, ZeroMatrix):   # the loss is linear in the parameter
        return ZeroMatrix(reader.n, reader.n)
    return reader.columns(hvp) if direction.shape[1] == 1 else reader.rows(hvp)


class _Reader:
    """Columns (of an a x 1 form) and rows (of a 1 x b form) of an expression linear in V, one per e_k."""

    def __init__(self, direction: Basic):
        self.v = direction
        self.n = direction.shape[0] if direction.shape[1] == 1 else direction.shape[1]

    def moves(self, expr: Basic) -> bool:
        return self.v in expr.atoms(type(self.v)) if isinstance(expr, Basic) else False

    def columns(self, expr: Basic) -> Basic:
        """For a column E(V), the a x n matrix whose column k is E(e_k)."""
        if expr == self.v:
            return Identity(self.n)
        if isinstance(expr, Transpose):
            return transpose(self.rows(expr.arg))
        if isinstance(expr, MatAdd):
            return mat_add(*[self.columns(t) for t in expr.args if self.moves(t)])
        if isinstance(expr, HadamardProduct):
            return self._hadamard(expr, lambda m: self.columns(m), lambda c: mat_mul(c, OneMatrix(1, self.n)))
        if isinstance(expr, MatMul):
            return self._product_columns(expr)
        raise self._refused(expr)

    def rows(self, expr: Basic) -> Basic:
        """For a row E(V), the n x b matrix whose row k is E(e_k)."""
        if expr == self.v:
            return Identity(self.n)
        if isinstance(expr, Transpose):
            return transpose(self.columns(expr.arg))
        if isinstance(expr, MatAdd):
            return mat_add(*[self.rows(t) for t in expr.args if self.moves(t)])
        if isinstance(expr, HadamardProduct):
            return self._hadamard(expr, lambda m: self.rows(m), lambda c: mat_mul(OneMatrix(self.n, 1), c))
        if isinstance(expr, MatMul):
            return transpose(self._product_columns(transpose(expr)))
        raise self._refused(expr)

    def scalar_row(self, expr: Basic) -> Basic:
        """For a scalar s(V), the 1 x n row of s(e_k)."""
        if isinstance(expr, MatrixElement) and expr.args[0].shape == (1, 1):
            return self.columns(expr.args[0])
        if isinstance(expr, Mul):
            moving = [a for a in expr.args if self.moves(a)]
            if len(moving) == 1:
                return mat_mul(Mul(*[a for a in expr.args if a is not moving[0]]), self.scalar_row(moving[0]))
        if isinstance(expr, Add):
            return mat_add(*[self.scalar_row(t) for t in expr.args if self.moves(t)])
        raise self._refused(expr)

    def _hadamard(self, expr, read, spread):
        moving = [f for f in expr.args if self.moves(f)]
        if len(moving) != 1:
            raise self._refused(expr)
        return hadamard(read(moving[0]), spread(hadamard(*[f for f in expr.args if f is not moving[0]])))

    def _product_columns(self, expr: Basic) -> Basic:
        """Columns of the column ``c L F(V) R``: F a column (R then 1 x 1) or a row (L a column)."""
        coeff, product = split_scalar(expr)
        if self.moves(coeff):
            return mat_mul(product, self.scalar_row(coeff))
        factors = list(product.args) if isinstance(product, MatMul) else [product]
        moving = [k for k, f in enumerate(factors) if self.moves(f)]
        if len(moving) != 1:
            raise self._refused(expr)
        k = moving[0]
        left, middle, right = factors[:k], factors[k], factors[k + 1:]
        rows = mat_mul(*left).rows if left else middle.rows
        if middle.cols == 1:
            read = mat_mul(coeff, *left, self.columns(middle))
            if not right:
                return read
            # R is 1 x 1: a scalar factor of every column
            return hadamard(read, mat_mul(OneMatrix(rows, 1), *right, OneMatrix(1, self.n)))
        if middle.rows == 1:
            # L F(e_k) R is the column L times the scalar F(e_k) R
            return mat_mul(coeff, *left, transpose(mat_mul(self.rows(middle), *right)))
        if right:
            # F(V) = sum_k (c_k(V) 1^T) ⊙ M_k, a column spread over the columns (a bias row's direction
            # V^T 1^T): F(V) u = sum_k c_k(V) ⊙ (M_k u), a column again
            u = mat_mul(*right)
            terms = [hadamard(self.columns(c), mat_mul(spread, u, OneMatrix(1, self.n)))
                     for c, spread in self._spread_columns(middle)]
            return mat_mul(coeff, *left, mat_add(*terms))
        raise self._refused(expr)

    def _spread_columns(self, expr: Basic) -> list[tuple[Basic, Basic]]:
        """``expr`` (a x b, linear in V) as pairs (c(V), M) with expr = sum (c(V) 1^T) ⊙ M, c(V) a column."""
        if isinstance(expr, MatAdd):
            return [pair for t in expr.args if self.moves(t) for pair in self._spread_columns(t)]
        if isinstance(expr, HadamardProduct):
            moving = [f for f in expr.args if self.moves(f)]
            if len(moving) != 1:
                raise self._refused(expr)
            others = [f for f in expr.args if f is not moving[0]]
            return [(c, hadamard(spread, *others)) for c, spread in self._spread_columns(moving[0])]
        if isinstance(expr, MatMul):
            coeff, product = split_scalar(expr)
            factors = list(product.args) if isinstance(product, MatMul) else [product]
            moving = [k for k, f in enumerate(factors) if self.moves(f)]
            if not self.moves(coeff) and len(factors) == 1:
                return [(mat_mul(coeff, c), spread) for c, spread in self._spread_columns(factors[0])]
            if not self.moves(coeff) and len(moving) == 1:
                # c(V) r with c(V) = coeff L F(V) a column and r the constant rows after it
                k = next((k for k in range(moving[0], len(factors)) if factors[k].cols == 1), None)
                if k is not None and k + 1 < len(factors):
                    column, row = mat_mul(coeff, *factors[:k + 1]), mat_mul(*factors[k + 1:])
                    return [(column, mat_mul(OneMatrix(column.rows, 1), row))]
        raise self._refused(expr)

    def _refused(self, expr: Basic) -> UnsupportedOperation:
        shape = f"{expr.shape[0]} x {expr.shape[1]}" if isinstance(expr, MatrixExpr) else "scalar"
        return UnsupportedOperation(f"hessian: the HVP's part {expr} ({shape}) is not a form whose matrix in the "
                                    f"direction {self.v.name} derive can read off; use g.hvp with a direction instead")
