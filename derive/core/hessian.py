"""The Hessian of a vector parameter read off its Hessian-vector product.

``H V`` is linear in the direction V (n x 1), so the n x n matrix H = [H e_1 ... H e_n] is the HVP at
V = e_k for every k. Every part E(V) (a x b) of the HVP on V's path is read as a sum of terms

    E(e_k) = C ⊙ (L diag(G e_k) R)        (C a x b or none, L a x p, G p x n, R p x b, all constant)

whose k-th diagonal is the k-th column of G: V itself is ``I diag(I e_k) 1``, and products, sums,
transposes, slices, blocks and entries keep the form (``P (L diag R) Q`` is ``(P L) diag (R Q)``). A
Hadamard product with a constant K is folded into L or R where the term allows it (a column
``K ⊙ (L diag R)`` is ``((K 1^T) ⊙ L ⊙ (1 R^T)) diag 1``, and likewise a row, L or R the identity, K a
column or row spread), and otherwise kept aside as C until a row vector on the left or a column on the
right contracts it: ``(C ⊙ L diag(g) R) q = (L ⊙ ((C ⊙ 1 q^T) R^T)) g``. A term whose R is ``1 r`` (or
whose L is ``c 1^T``) is first rewritten with an identity, ``L diag(g) (1 r) = diag(L g) (1 r)``, so that
no mask is kept for it (an n-vector's entries in an explicit matrix, a column x in ``x u``). The HVP is a
column, so every term ends as ``L diag(g_k) 1 = L g_k`` and H is the sum of the ``L G``. Nothing here
builds a diagonal of an N-vector or a Kronecker product: the only diagonals are of the n-vector's basis
(a row bias under a softmax gives ``I ⊙ (1 c^T)``, the n x n diag(c) written as a Hadamard product).
Logistic regression comes out as ``X^T ((p ⊙ (1 - p)) 1^T ⊙ X) / N``.

A 1 x n parameter is read through the transpose, and a 1 x 1 parameter's Hessian is its HVP at V = 1. A
term kept aside and then multiplied by a matrix on both sides (no vector to contract it), or a form that
is not linear in V, raises, naming the part: the HVP itself is the answer there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import (
    Add,
    Basic,
    HadamardProduct,
    Identity,
    Integer,
    MatAdd,
    MatMul,
    MatrixExpr,
    Mul,
    OneMatrix,
    S,
    Trace,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from ..errors import UnsupportedOperation
from .algebra import embed, hadamard, mat_add, mat_mul, split_scalar, submatrix, substitute, transpose
from .canonical import Blocks, Entries

__all__ = ["read_off"]

# The characters of a refused part quoted in the error.
EXCERPT = 160


def read_off(hvp: Basic, direction: Basic) -> Basic:
    """The n x n matrix H with ``hvp = H V`` (V = ``direction``, n x 1) or ``hvp = V H`` (V 1 x n)."""
    reader = _Reader(direction)
    if isinstance(hvp, ZeroMatrix):   # the loss is linear in the parameter
        return ZeroMatrix(reader.n, reader.n)
    if direction.shape == (1, 1):
        # linear in the scalar V, the HVP at V = 1 is the 1 x 1 Hessian, whatever its form (t[0, 0] * A
        # and exp(t[0, 0]) put V in scalar entries and explicit matrices, which the readers do not take)
        return substitute(hvp.xreplace({MatrixElement(direction, 0, 0): S.One}), {direction: Identity(1)})
    terms = reader.terms(hvp)
    if direction.shape[1] == 1:
        return mat_add(*[reader.matrix(t, hvp) for t in terms])
    # a row: row k of H is hvp(e_k), column k of H^T (H is symmetric, but read it as it is)
    return transpose(mat_add(*[reader.matrix(t.transposed(), hvp) for t in terms]))


@dataclass(frozen=True)
class _Term:
    """``E(e_k) = mask ⊙ (left diag(basis e_k) right)``; ``mask`` None is the ones-matrix."""

    mask: Basic | None
    left: Basic    # a x p
    basis: Basic   # p x n
    right: Basic   # p x b

    @property
    def shape(self) -> tuple:
        return self.left.rows, self.right.cols

    @property
    def inner(self) -> Basic:
        return self.left.cols

    def transposed(self) -> _Term:
        mask = None if self.mask is None else transpose(self.mask)
        return _Term(mask, transpose(self.right), self.basis, transpose(self.left))

    def scaled(self, coeff: Basic) -> _Term:
        return _Term(self.mask, mat_mul(coeff, self.left), self.basis, self.right)

    def sliced(self, rows: tuple, cols: tuple) -> _Term:
        # slicing commutes with the Hadamard product, so the mask is sliced alike
        mask = None if self.mask is None else submatrix(self.mask, rows, cols)
        return _Term(mask, submatrix(self.left, rows, (S.Zero, self.inner)), self.basis,
                     submatrix(self.right, (S.Zero, self.inner), cols))

    def embedded(self, shape: tuple, rows: tuple, cols: tuple) -> _Term:
        mask = None if self.mask is None else embed(self.mask, shape, rows, cols)
        return _Term(mask, embed(self.left, (shape[0], self.inner), rows, (S.Zero, self.inner)), self.basis,
                     embed(self.right, (self.inner, shape[1]), (S.Zero, self.inner), cols))

    def right_product(self, q: Basic) -> _Term:
        """``E q``: any constant q joins R; under a mask q must be a column, which contracts the mask:
        ``(C ⊙ L diag(g) R) q = (L ⊙ ((C ⊙ 1 q^T) R^T)) g``."""
        if self.mask is None:
            return self if q == OneMatrix(1, 1) else _Term(None, self.left, self.basis, mat_mul(self.right, q))
        weights = hadamard(self.mask, mat_mul(OneMatrix(self.shape[0], 1), transpose(q)))
        return _Term(None, hadamard(self.left, mat_mul(weights, transpose(self.right))), self.basis,
                     OneMatrix(self.inner, 1))

    def left_product(self, r: Basic) -> _Term:
        """``r E``: any constant r joins L; under a mask r must be a row:
        ``r (C ⊙ L diag(g) R) = 1^T diag(g) (R ⊙ (L^T (C ⊙ r^T 1^T)))``."""
        if self.mask is None:
            return _Term(None, mat_mul(r, self.left), self.basis, self.right)
        weights = hadamard(self.mask, mat_mul(transpose(r), OneMatrix(1, self.shape[1])))
        return _Term(None, OneMatrix(1, self.inner), self.basis,
                     hadamard(self.right, mat_mul(transpose(self.left), weights)))

    def hadamard(self, factor: Basic) -> _Term:
        """``factor ⊙ E``, folded into L or R where the term's shape allows it, else kept as the mask."""
        mask = factor if self.mask is None else hadamard(self.mask, factor)
        (a, b), p = self.shape, self.inner
        # an identity first: folded as below, it would make the a x a diagonal (K 1^T) ⊙ I ⊙ (1 R^T), N x N
        # where the identity is a flattened term's (see flattened)
        if _is_identity(self.left):    # K ⊙ (diag(g) R) = diag(g) (K ⊙ R)
            return _Term(None, self.left, self.basis, hadamard(mask, self.right))
        if _is_identity(self.right):
            return _Term(None, hadamard(mask, self.left), self.basis, self.right)
        if b == 1:   # K ⊙ (L (R ⊙ g)) = ((K 1^T) ⊙ L ⊙ (1 R^T)) g
            left = hadamard(mat_mul(mask, OneMatrix(1, p)), self.left, mat_mul(OneMatrix(a, 1), transpose(self.right)))
            return _Term(None, left, self.basis, OneMatrix(p, 1))
        if a == 1:
            right = hadamard(mat_mul(OneMatrix(p, 1), mask), self.right, mat_mul(transpose(self.left), OneMatrix(1, b)))
            return _Term(None, OneMatrix(1, p), self.basis, right)
        column, row = _spread(mask)
        if column is not None:                 # (c 1^T) ⊙ X = diag(c) X
            return _Term(None, hadamard(mat_mul(column, OneMatrix(1, p)), self.left), self.basis, self.right)
        if row is not None:
            return _Term(None, self.left, self.basis, hadamard(self.right, mat_mul(OneMatrix(p, 1), row)))
        flat = self.flattened()
        if flat is not None:   # an identity on one side now: the branches above fold the factor in
            return flat.hadamard(factor)
        return _Term(mask, self.left, self.basis, self.right)

    def flattened(self) -> _Term | None:
        """The term with an identity on one side, where R is ``1 r`` (all its rows alike, p = 1 among them)
        or L is ``c 1^T``: ``L diag(g) (1 r) = diag(L g) (1 r)`` and ``(c 1^T) diag(g) R = (c 1^T) diag(R^T g)``.
        Such an R or L ties no index to the basis, so a Hadamard product need not be kept as a mask (an
        n-vector's entries in an explicit matrix, a column x in an outer product ``x u``)."""
        (a, b) = self.shape
        row = _ones_times(self.right)
        if row is not None:
            return _Term(self.mask, Identity(a), mat_mul(self.left, self.basis), mat_mul(OneMatrix(a, 1), row))
        column = _times_ones(self.left)
        if column is not None:
            return _Term(self.mask, mat_mul(column, OneMatrix(1, b)), mat_mul(transpose(self.right), self.basis),
                         Identity(b))
        return None

    def entry_row(self) -> Basic:
        """For a 1 x 1 term, the 1 x n row of its values at the e_k: ``L ((R 1^T) ⊙ G)``, as :meth:`_Reader.matrix`
        reads a column (``(L ⊙ R^T) G`` would transpose R, which for a Hadamard product SymPy rewrites
        throughout, for seconds on the entries of a big tangent)."""
        term = self.right_product(OneMatrix(1, 1))
        return mat_mul(term.left, hadamard(mat_mul(term.right, OneMatrix(1, term.basis.cols)), term.basis))


def _spread(mask: Basic) -> tuple[Basic | None, Basic | None]:
    """``(c, None)`` for a mask ``c 1^T``, ``(None, r)`` for ``1 r``, else ``(None, None)``."""
    coeff, product = split_scalar(mask)
    factors = list(product.args) if isinstance(product, MatMul) else [product]
    if len(factors) >= 2 and isinstance(factors[-1], OneMatrix) and factors[-1].rows == 1:
        return mat_mul(coeff, *factors[:-1]), None
    if len(factors) >= 2 and isinstance(factors[0], OneMatrix) and factors[0].cols == 1:
        return None, mat_mul(coeff, *factors[1:])
    return None, None


def _is_identity(matrix: Basic) -> bool:
    """``c I``: a scaled identity diagonal too (a term's L after ``scaled``)."""
    return isinstance(split_scalar(matrix)[1], Identity)


def _ones_times(matrix: Basic) -> Basic | None:
    """``r`` for a matrix ``1 r`` (a single row, or a ones-matrix first), else None."""
    if matrix.rows == 1:
        return matrix
    coeff, product = split_scalar(matrix)
    first, *rest = product.args if isinstance(product, MatMul) else (product,)
    if not isinstance(first, OneMatrix):
        return None
    return mat_mul(coeff, *rest) if first.cols == 1 and rest else mat_mul(coeff, OneMatrix(1, first.cols), *rest)


def _times_ones(matrix: Basic) -> Basic | None:
    """``c`` for a matrix ``c 1^T`` (a single column, or a ones-matrix last), else None; read as it is
    written, not through a transpose of L (SymPy rewrites a transposed Hadamard product throughout)."""
    if matrix.cols == 1:
        return matrix
    coeff, product = split_scalar(matrix)
    *rest, last = product.args if isinstance(product, MatMul) else (product,)
    if not isinstance(last, OneMatrix):
        return None
    return mat_mul(coeff, *rest) if last.rows == 1 and rest else mat_mul(coeff, *rest, OneMatrix(last.rows, 1))


class _Reader:
    """The terms of an expression linear in V (:class:`_Term`), and the Hessian they add up to."""

    def __init__(self, direction: Basic):
        self.v = direction
        self.n = direction.shape[0] if direction.shape[1] == 1 else direction.shape[1]
        self._moving: dict[Basic, bool] = {}

    def moves(self, expr: Basic) -> bool:
        """Whether V occurs in ``expr``, remembered per node: asked of every part on the way down, where
        ``atoms`` would walk a tangent's shared subtrees as a tree, again and again."""
        if not isinstance(expr, Basic):
            return False
        known = self._moving.get(expr)
        if known is None:
            known = self._moving[expr] = expr == self.v or any(self.moves(arg) for arg in expr.args)
        return known

    def matrix(self, term: _Term, hvp: Basic) -> Basic:
        """The a x n matrix whose column k is the column term at e_k: ``L ((R 1^T) ⊙ G)``."""
        if term.shape[1] != 1:
            raise self._refused(hvp)
        term = term.right_product(OneMatrix(1, 1))
        return mat_mul(term.left, hadamard(mat_mul(term.right, OneMatrix(1, self.n)), term.basis))

    def terms(self, expr: Basic) -> list[_Term]:
        """``expr`` (a matrix linear in V) as a sum of terms."""
        if expr == self.v:
            if self.v.shape[1] == 1:
                return [_Term(None, Identity(self.n), Identity(self.n), OneMatrix(self.n, 1))]
            return [_Term(None, OneMatrix(1, self.n), Identity(self.n), Identity(self.n))]
        if not self.moves(expr):
            return []
        if isinstance(expr, Transpose):
            return [t.transposed() for t in self.terms(expr.arg)]
        if isinstance(expr, MatAdd):
            return [t for arg in expr.args for t in self.terms(arg)]
        if isinstance(expr, HadamardProduct):
            moving = [f for f in expr.args if self.moves(f)]
            if len(moving) != 1:
                raise self._refused(expr)
            others = hadamard(*[f for f in expr.args if f is not moving[0]])
            return [t.hadamard(others) for t in self.terms(moving[0])]
        if isinstance(expr, MatMul):
            return self._product(expr)
        if isinstance(expr, MatrixSlice):
            rows, cols = expr.rowslice, expr.colslice
            if rows[2] != 1 or cols[2] != 1:
                raise self._refused(expr)
            return [t.sliced(rows[:2], cols[:2]) for t in self.terms(expr.parent)]
        if isinstance(expr, Blocks):
            return [t.embedded(expr.shape, rows, cols) for block, (rows, cols) in zip(expr.blocks, expr.spans())
                    for t in self.terms(block)]
        if isinstance(expr, Entries):
            return self._entries(expr)
        raise self._refused(expr)

    def _product(self, expr: Basic) -> list[_Term]:
        coeff, product = split_scalar(expr)
        if self.moves(coeff):
            if self.moves(product):
                raise self._refused(expr)
            return [self._scalar_times(self.row(coeff), product)]
        factors = list(product.args) if isinstance(product, MatMul) else [product]
        moving = [k for k, f in enumerate(factors) if self.moves(f)]
        if len(moving) != 1:
            raise self._refused(expr)
        k = moving[0]
        terms = [t if coeff == 1 else t.scaled(coeff) for t in self.terms(factors[k])]
        return [self._between(t, factors[:k], factors[k + 1:], expr) for t in terms]

    def _between(self, term: _Term, before: list, after: list, expr: Basic) -> _Term:
        """``before E after``: a mask is contracted first with the nearest column on the right (a ones-matrix
        is a column times a row) or else the nearest row on the left; with none, ``expr`` is refused."""
        if term.mask is not None:
            column = next((j for j, f in enumerate(after) if f.cols == 1 or isinstance(f, OneMatrix)), None)
            row = next((j for j in reversed(range(len(before))) if before[j].rows == 1
                        or isinstance(before[j], OneMatrix)), None)
            if column is not None:
                last = after[column]
                term = term.right_product(mat_mul(*after[:column], OneMatrix(last.rows, 1) if last.cols != 1 else last))
                after = [OneMatrix(1, last.cols)] + after[column + 1:] if last.cols != 1 else after[column + 1:]
            elif row is not None:
                first = before[row]
                term = term.left_product(mat_mul(OneMatrix(1, first.cols) if first.rows != 1 else first, *before[row + 1:]))
                before = before[:row] + [OneMatrix(first.rows, 1)] if first.rows != 1 else before[:row]
            elif before or after:
                raise self._refused(expr)
        if before:
            term = term.left_product(mat_mul(*before))
        return term.right_product(mat_mul(*after)) if after else term

    def _scalar_times(self, row: Basic, matrix: Basic) -> _Term:
        """``s(V) M`` with ``row`` the 1 x n values s(e_k): one diagonal entry when M is a vector."""
        a, b = matrix.shape
        if b == 1:
            return _Term(None, matrix, row, OneMatrix(1, 1))
        if a == 1:
            return _Term(None, OneMatrix(1, 1), row, matrix)
        return _Term(None, Identity(a), mat_mul(OneMatrix(a, 1), row), matrix)

    def _entries(self, expr: Entries) -> list[_Term]:
        a, b = expr.shape
        terms = []
        for (i, j), value in zip(expr.positions(), expr.entries):
            if self.moves(value):
                unit = Entries(1, S.One)
                terms.append(_Term(None, embed(unit, (a, 1), (Integer(i), Integer(i + 1)), (S.Zero, S.One)),
                                   self.row(value),
                                   embed(unit, (1, b), (S.Zero, S.One), (Integer(j), Integer(j + 1)))))
        return terms

    def row(self, expr: Basic) -> Basic:
        """For a scalar s(V), the 1 x n row of the s(e_k)."""
        if isinstance(expr, MatrixElement):
            matrix, i, j = expr.args
            entry = [t.sliced((i, i + 1), (j, j + 1)) for t in self.terms(matrix)]
            return mat_add(*[t.entry_row() for t in entry])
        if isinstance(expr, Trace):   # tr F = 1^T (I ⊙ F) 1
            a = expr.arg.rows
            units = [t.hadamard(Identity(a)).left_product(OneMatrix(1, a)).right_product(OneMatrix(a, 1))
                     for t in self.terms(expr.arg)]
            return mat_add(*[t.entry_row() for t in units])
        if isinstance(expr, Mul):
            moving = [f for f in expr.args if self.moves(f)]
            if len(moving) == 1:
                return mat_mul(Mul(*[f for f in expr.args if f is not moving[0]]), self.row(moving[0]))
        if isinstance(expr, Add):
            return mat_add(*[self.row(t) for t in expr.args if self.moves(t)])
        raise self._refused(expr)

    def _refused(self, expr: Basic) -> UnsupportedOperation:
        shape = f"{expr.shape[0]} x {expr.shape[1]}" if isinstance(expr, MatrixExpr) else "scalar"
        text = str(expr)  # a tangent through two layers prints to thousands of characters: its start names it
        text = text if len(text) <= EXCERPT else text[:EXCERPT] + " ..."
        return UnsupportedOperation(f"hessian: the Hessian in the direction {self.v.name} cannot be read off as a "
                                    f"matrix: derive cannot write a part of the HVP ({shape}, {text}) as a "
                                    f"constant matrix times {self.v.name}; use g.hvp with a direction instead")
