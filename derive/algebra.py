"""Constructors that keep gradients in the closed form people write on the board.

SymPy's operators (``A*B``, ``A.T``) call ``doit`` on the whole tree they build, which is both slow
on deep networks and apt to rewrite a form into another one. The rules build their results with
these small constructors instead: each flattens one level, drops identities (``I`` in a product, a
ones-matrix in a Hadamard product, zeros in a sum) and collects Hadamard powers of equal bases, so
``(P - Y) ⊘ (P ⊙ (1 - P)) ⊙ P ⊙ (1 - P)`` comes out as ``P - Y`` without any call to ``simplify``.
"""

from __future__ import annotations

from sympy import (
    Basic,
    HadamardPower,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixExpr,
    OneMatrix,
    S,
    Transpose,
    ZeroMatrix,
)

__all__ = ["hadamard", "hadamard_power", "mat_add", "mat_mul", "one_minus", "split_scalar", "transpose"]


def split_scalar(expr: Basic) -> tuple[Basic, Basic]:
    """Split ``c * M`` into the scalar ``c`` and the matrix ``M`` (``c`` is 1 when there is none)."""
    if isinstance(expr, MatMul):
        scalars = [a for a in expr.args if not isinstance(a, MatrixExpr)]
        if scalars:
            matrices = [a for a in expr.args if isinstance(a, MatrixExpr)]
            coeff = S.One
            for factor in scalars:
                coeff *= factor
            return coeff, _product(S.One, matrices)
    return S.One, expr


def _product(coeff: Basic, matrices: list[Basic]) -> Basic:
    if len(matrices) == 1 and coeff == 1:
        return matrices[0]
    args = matrices if coeff == 1 else [coeff, *matrices]
    return MatMul(*args)


def mat_mul(*factors: Basic) -> Basic:
    """Product of scalars and matrices, flattened, with identities and unit scalars dropped."""
    coeff = S.One
    matrices: list[Basic] = []
    for factor in factors:
        parts = factor.args if isinstance(factor, MatMul) else (factor,)
        for part in parts:
            if isinstance(part, MatrixExpr):
                matrices.append(part)
            else:
                coeff *= part
    shape = (matrices[0].rows, matrices[-1].cols) if matrices else None
    if not matrices:
        return coeff
    if coeff == 0 or any(isinstance(m, ZeroMatrix) for m in matrices):
        return ZeroMatrix(*shape)
    kept: list[Basic] = []
    for m in matrices:
        if isinstance(m, Identity):
            continue
        previous = kept[-1] if kept else None
        if isinstance(m, OneMatrix) and isinstance(previous, OneMatrix):
            # 1_(a x n) 1_(n x b) is n times the ones-matrix of a x b (a plain n when a = b = 1)
            kept.pop()
            coeff *= m.rows
            kept.append(OneMatrix(previous.rows, m.cols))
            continue
        kept.append(m)
    if not kept:
        kept = [Identity(shape[0])]
    return _product(coeff, kept)


def mat_add(*terms: Basic) -> Basic:
    """Sum of matrices (or of scalars), flattened, with zeros dropped."""
    flat: list[Basic] = []
    for term in terms:
        flat.extend(term.args if isinstance(term, MatAdd) else (term,))
    nonzero = [t for t in flat if not (isinstance(t, ZeroMatrix) or t == 0)]
    if not nonzero:
        return flat[0] if flat else S.Zero
    if len(nonzero) == 1:
        return nonzero[0]
    if not isinstance(nonzero[0], MatrixExpr):
        total = S.Zero
        for term in nonzero:
            total += term
        return total
    return MatAdd(*nonzero)


def hadamard(*factors: Basic) -> Basic:
    """Hadamard product with scalars pulled out and powers of equal bases collected.

    A ones-matrix is the identity of the Hadamard product and is dropped; a base whose exponents
    add up to zero cancels. This is what turns the chained BCE and sigmoid factors into ``P - Y``.
    """
    coeff = S.One
    exponents: dict[Basic, Basic] = {}
    shape = None
    stack = list(factors)
    while stack:
        factor = stack.pop(0)
        scalar, matrix = split_scalar(factor)
        coeff *= scalar
        shape = matrix.shape
        if isinstance(matrix, HadamardProduct):
            stack[:0] = list(matrix.args)
            continue
        if isinstance(matrix, ZeroMatrix):
            return ZeroMatrix(*matrix.shape)
        if isinstance(matrix, OneMatrix):
            continue
        base, power = (matrix.args if isinstance(matrix, HadamardPower) else (matrix, S.One))
        exponents[base] = exponents.get(base, S.Zero) + power
    kept = [base if power == 1 else HadamardPower(base, power) for base, power in exponents.items() if power != 0]
    if not kept:
        body = OneMatrix(*shape)
    elif len(kept) == 1:
        body = kept[0]
    else:
        body = HadamardProduct(*kept)
    return mat_mul(coeff, body)


def hadamard_power(base: Basic, power: Basic) -> Basic:
    """``base`` raised elementwise to ``power``, collected like the factors of :func:`hadamard`."""
    return hadamard(HadamardPower(base, power)) if power != 1 else base


def transpose(expr: Basic) -> Basic:
    """Transpose, pushed through products and sums one level, never twice-transposed."""
    if not isinstance(expr, MatrixExpr):
        return expr
    if isinstance(expr, Transpose):
        return expr.arg
    if isinstance(expr, MatMul):
        return mat_mul(*[transpose(a) if isinstance(a, MatrixExpr) else a for a in reversed(expr.args)])
    if isinstance(expr, MatAdd):
        return mat_add(*[transpose(a) for a in expr.args])
    if isinstance(expr, (Identity, ZeroMatrix, OneMatrix)):
        return type(expr)(*reversed(expr.shape)) if not isinstance(expr, Identity) else expr
    evaluate = getattr(expr, "_eval_transpose", None)
    if evaluate is not None:
        result = evaluate()
        if result is not None:
            return result
    return Transpose(expr)


def one_minus(expr: Basic) -> Basic:
    """``1 - A`` elementwise, written with a ones-matrix so that equal factors collect."""
    return mat_add(OneMatrix(*expr.shape), mat_mul(S.NegativeOne, expr))
