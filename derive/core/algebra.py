"""Constructors that keep gradients in the closed form people write on the board.

SymPy's operators (``A*B``, ``A.T``) call ``doit`` on the whole tree they build, which is both slow
on deep networks and apt to rewrite a form into another one. The rules build their results with
these small constructors instead, and :func:`substitute` rebuilds closed forms with them: each
flattens one level, drops identities (``I`` in a product, a ones-matrix in a
Hadamard product, zeros in a sum), collects repeated terms (``R + R`` is ``2 R``) and Hadamard
powers of equal bases, so ``(P - Y) ⊘ (P ⊙ (1 - P)) ⊙ P ⊙ (1 - P)`` comes out as ``P - Y``
without any call to ``simplify``.

They build SymPy nodes without SymPy's argument validation, which asks every argument for its
shape and so recurses down a whole chain of upstream gradients: the shapes were checked when the
graph was built, and a shape is computed here only where a result needs one (a zero, an identity).

:func:`submatrix` is the slice of a matrix, pushed through products (rows of the first factor,
columns of the last), sums, Hadamard products, transposes, elementwise functions and blocks (an
aligned block is picked exactly); :func:`embed` places a matrix inside zeros; :func:`entry` is
entry (i, j), read off explicit matrices and blocks where it can be.
"""

from __future__ import annotations

from sympy import (
    Add,
    Basic,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    OneMatrix,
    S,
    Transpose,
    ZeroMatrix,
    expand,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from .canonical import Blocks, Entries
from .symbols import LEAVES

__all__ = ["embed", "entry", "hadamard", "hadamard_power", "mat_add", "mat_mul", "one_minus", "split_scalar",
           "submatrix", "substitute", "transpose"]


def _new(cls, args) -> Basic:
    """A node of ``cls`` on ``args`` with no validation (see the module docstring)."""
    return Basic.__new__(cls, *args)


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
    return _new(MatMul, matrices if coeff == 1 else [coeff, *matrices])


def _is_scalar_matrix(m: Basic) -> bool:
    """A 1 x 1 explicit matrix: in a product with other matrices it is a scalar factor."""
    return isinstance(m, Entries) and len(m.entries) == 1


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
    if not matrices:
        return coeff
    if coeff == 0 or any(isinstance(m, ZeroMatrix) for m in matrices):
        return ZeroMatrix(matrices[0].rows, matrices[-1].cols)
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
        if previous is not None and _power_base(previous)[0] == _power_base(m)[0]:
            # A A is A^2, A^2 A^-1 is A: adjacent powers of one base collect, as in a Hadamard product
            kept.pop()
            base = _power_base(m)[0]
            power = _matrix_power(base, _power_base(previous)[1] + _power_base(m)[1])
            if power is not None:
                kept.append(power)
            continue
        kept.append(m)
    if any(_is_scalar_matrix(m) for m in kept):
        for m in kept:
            if _is_scalar_matrix(m):
                coeff *= m.entries[0]
        kept = [m for m in kept if not _is_scalar_matrix(m)]
        if not kept:
            return Entries(1, coeff)
    if not kept:
        kept = [Identity(matrices[0].rows)]
    return _product(coeff, kept)


def _power_base(m: Basic) -> tuple[Basic, Basic]:
    """``m`` as a base and an integer power: A^k -> (A, k), A^-1 -> (A, -1), A -> (A, 1)."""
    if isinstance(m, MatPow) and isinstance(m.exp, Integer):
        base, power = m.args
        if isinstance(base, Inverse):
            return base.arg, -power
        return base, power
    if isinstance(m, Inverse):
        return m.arg, S.NegativeOne
    return m, S.One


def _matrix_power(base: Basic, power: Basic) -> Basic | None:
    """``base`` to an integer power, negative powers as powers of the inverse; None for the identity."""
    if power == 0:
        return None
    if power == 1:
        return base
    if power == -1:
        return Inverse(base)
    return MatPow(base, power) if power > 0 else MatPow(Inverse(base), -power)


def mat_add(*terms: Basic) -> Basic:
    """Sum of matrices (or of scalars), flattened, zeros dropped and repeated terms collected.

    ``c1 M + c2 M`` is ``(c1 + c2) M``; explicit matrices of one shape add entry by entry and
    block matrices of one layout block by block.
    """
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
    collected = _collected(nonzero)
    if not collected:
        return ZeroMatrix(*nonzero[0].shape)
    return collected[0] if len(collected) == 1 else _new(MatAdd, collected)


def _collected(terms: list[Basic]) -> list[Basic]:
    coefficients: dict[Basic, Basic] = {}
    originals: dict[Basic, list[Basic]] = {}
    for term in terms:
        coeff, matrix = split_scalar(term)
        coefficients[matrix] = coefficients.get(matrix, S.Zero) + coeff
        originals.setdefault(matrix, []).append(term)
    out: list[Basic] = []
    layouts: dict[tuple, int] = {}   # explicit matrices and blocks of one layout: where their sum is
    for matrix, coeff in coefficients.items():
        if coeff == 0:
            continue
        term = originals[matrix][0] if len(originals[matrix]) == 1 else mat_mul(coeff, matrix)
        key = _layout(matrix)
        if key is None:
            out.append(term)
        elif key in layouts:
            out[layouts[key]] = _add_layout(out[layouts[key]], coeff, matrix)
        else:
            layouts[key] = len(out)
            out.append(term)
    return [t for t in out if not isinstance(t, ZeroMatrix)]


def _layout(matrix: Basic):
    if isinstance(matrix, Entries):
        return ("entries", matrix.shape)
    if isinstance(matrix, Blocks):
        return ("blocks", matrix.columns, tuple(matrix.row_sizes), tuple(matrix.col_sizes))
    return None


def _add_layout(total: Basic, coeff: Basic, matrix: Basic) -> Basic:
    """``total + coeff * matrix`` for two explicit matrices (or block matrices) of one layout."""
    total_coeff, total_matrix = split_scalar(total)
    if isinstance(matrix, Entries):
        return Entries(matrix.columns, *[total_coeff * a + coeff * b
                                         for a, b in zip(total_matrix.entries, matrix.entries)])
    return Blocks(matrix.columns, *[mat_add(mat_mul(total_coeff, a), mat_mul(coeff, b))
                                    for a, b in zip(total_matrix.blocks, matrix.blocks)])


def hadamard(*factors: Basic) -> Basic:
    """Hadamard product with scalars pulled out and powers of equal bases collected.

    A ones-matrix is the identity of the Hadamard product and is dropped; a base whose exponents
    add up to zero cancels. This is what turns the chained BCE and sigmoid factors into ``P - Y``.
    """
    coeff = S.One
    exponents: dict[Basic, Basic] = {}
    first = None
    stack = list(factors)
    while stack:
        factor = stack.pop(0)
        scalar, matrix = split_scalar(factor)
        coeff *= scalar
        first = matrix if first is None else first
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
        body = OneMatrix(*first.shape)
    elif len(kept) == 1:
        body = kept[0]
    else:
        body = _new(HadamardProduct, kept)
    return mat_mul(coeff, body)


def hadamard_power(base: Basic, power: Basic) -> Basic:
    """``base`` raised elementwise to ``power``, collected like the factors of :func:`hadamard`."""
    return hadamard(HadamardPower(base, power)) if power != 1 else base


def transpose(expr: Basic, deep: bool = True) -> Basic:
    """Transpose, pushed through products, sums, blocks and explicit matrices, never twice-transposed.

    ``deep=False`` only cancels a double transpose, transposes constants, blocks and explicit
    matrices and pulls out a scalar: rebuilding a closed form calls it once per node, where a push
    all the way down would make that quadratic in depth (and ``(X W + 1 b)^T`` reads better as it is).
    """
    if not isinstance(expr, MatrixExpr):
        return expr
    if isinstance(expr, Transpose):
        return expr.arg
    if isinstance(expr, Identity):
        return expr
    if isinstance(expr, (ZeroMatrix, OneMatrix)):
        return type(expr)(expr.cols, expr.rows)
    if not deep and isinstance(expr, (MatMul, MatAdd)):
        coeff, matrix = split_scalar(expr)
        single = coeff != 1 and not isinstance(matrix, (MatMul, MatAdd))
        return mat_mul(coeff, transpose(matrix, deep)) if single else Transpose(expr)
    if isinstance(expr, MatMul):
        return mat_mul(*[transpose(a) if isinstance(a, MatrixExpr) else a for a in reversed(expr.args)])
    if isinstance(expr, MatAdd):
        return mat_add(*[transpose(a) for a in expr.args])
    if isinstance(expr, Blocks):
        columns = [expr.grid_column(c) for c in range(expr.columns)]
        return Blocks.from_grid([[transpose(b, deep) for b in column] for column in columns])
    if isinstance(expr, Entries):
        rows = expr.rows_of_entries
        return Entries.from_rows([[row[c] for row in rows] for c in range(expr.columns)])
    if deep:
        evaluate = getattr(expr, "_eval_transpose", None)
        if evaluate is not None:
            result = evaluate()
            if result is not None:
                return result
    return Transpose(expr)


def one_minus(expr: Basic) -> Basic:
    """``1 - A`` elementwise, written with a ones-matrix so that equal factors collect."""
    return mat_add(OneMatrix(*expr.shape), mat_mul(S.NegativeOne, expr))


# --- slices, embeddings and entries -----------------------------------------------------------------

def _same(a, b) -> bool:
    return a == b or expand(a - b) == 0


def _offsets(sizes) -> list:
    out = [S.Zero]
    for size in sizes:
        out.append(out[-1] + size)
    return out


def submatrix(expr: Basic, rows: tuple, cols: tuple) -> Basic:
    """Rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of ``expr``, in closed form where it can."""
    (r0, r1), (c0, c1) = rows, cols
    if _same(r0, 0) and _same(c0, 0) and _same(r1, expr.rows) and _same(c1, expr.cols):
        return expr
    height, width = r1 - r0, c1 - c0
    if isinstance(expr, ZeroMatrix):
        return ZeroMatrix(height, width)
    if isinstance(expr, OneMatrix):
        return OneMatrix(height, width)
    if isinstance(expr, Identity) and _same(r0, c0) and _same(r1, c1):
        return Identity(height)
    if isinstance(expr, Transpose):
        return transpose(submatrix(expr.arg, cols, rows))
    if isinstance(expr, MatMul):
        coeff, product = split_scalar(expr)
        matrices = list(product.args) if isinstance(product, MatMul) else [product]
        if len(matrices) == 1:
            return mat_mul(coeff, submatrix(matrices[0], rows, cols))
        first, *middle, last = matrices
        return mat_mul(coeff, submatrix(first, rows, (S.Zero, first.cols)), *middle,
                       submatrix(last, (S.Zero, last.rows), cols))
    if isinstance(expr, MatAdd):
        return mat_add(*[submatrix(t, rows, cols) for t in expr.args])
    if isinstance(expr, HadamardProduct):
        return hadamard(*[submatrix(f, rows, cols) for f in expr.args])
    if isinstance(expr, HadamardPower):
        return HadamardPower(submatrix(expr.base, rows, cols), expr.exp)
    if getattr(expr, "entrywise", False):  # an activation (derive.core.elementwise) of the slice
        return type(expr)(submatrix(expr.arg, rows, cols), *expr.params)
    if isinstance(expr, MatrixSlice):
        (a, _, _), (c, _, _) = expr.rowslice, expr.colslice
        return submatrix(expr.parent, (a + r0, a + r1), (c + c0, c + c1))
    picked = _aligned_blocks(expr, rows, cols) if isinstance(expr, Blocks) else None
    if picked is not None:
        return picked
    if isinstance(expr, Entries) and all(isinstance(b, Integer) for b in (r0, r1, c0, c1)):
        grid = expr.rows_of_entries
        return Entries.from_rows([row[int(c0):int(c1)] for row in grid[int(r0):int(r1)]])
    return MatrixSlice(expr, (r0, r1), (c0, c1))


def _aligned_blocks(blocks: Blocks, rows: tuple, cols: tuple) -> Basic | None:
    """The blocks that exactly cover ``rows`` x ``cols``, or None when the slice cuts through one."""
    row_range = _aligned(_offsets(blocks.row_sizes), rows)
    col_range = _aligned(_offsets(blocks.col_sizes), cols)
    if row_range is None or col_range is None:
        return None
    grid = [row[col_range[0]:col_range[1]] for row in blocks.grid[row_range[0]:row_range[1]]]
    return grid[0][0] if len(grid) == 1 and len(grid[0]) == 1 else Blocks.from_grid(grid)


def _aligned(offsets: list, span: tuple) -> tuple[int, int] | None:
    start = next((k for k, o in enumerate(offsets) if _same(o, span[0])), None)
    stop = next((k for k, o in enumerate(offsets) if _same(o, span[1])), None)
    if start is None or stop is None or stop <= start:
        return None
    return start, stop


def embed(inner: Basic, shape: tuple, rows: tuple, cols: tuple) -> Basic:
    """A zero matrix of ``shape`` with ``inner`` at rows ``rows`` and columns ``cols``."""
    (r0, r1), (c0, c1) = rows, cols
    n, m = shape
    concrete = all(isinstance(b, (int, Integer)) for b in (r0, r1, c0, c1, n, m))
    if concrete and isinstance(inner, Entries):
        entries = [S.Zero] * (int(n) * int(m))
        for (i, j), value in zip(inner.positions(), inner.entries):
            entries[(int(r0) + i) * int(m) + int(c0) + j] = value
        return Entries(m, *entries)
    row_parts = [p for p in ((S.Zero, r0), (r0, r1), (r1, n)) if not _same(p[0], p[1])]
    col_parts = [p for p in ((S.Zero, c0), (c0, c1), (c1, m)) if not _same(p[0], p[1])]
    grid = [[inner if rp == (r0, r1) and cp == (c0, c1) else ZeroMatrix(rp[1] - rp[0], cp[1] - cp[0])
             for cp in col_parts] for rp in row_parts]
    return grid[0][0] if len(grid) == 1 and len(grid[0]) == 1 else Blocks.from_grid(grid)


def entry(matrix: Basic, i, j) -> Basic:
    """Entry (i, j) of ``matrix``: read off explicit matrices, blocks, constants and sums; else ``M[i, j]``."""
    if not (isinstance(i, (int, Integer)) and isinstance(j, (int, Integer))):
        return MatrixElement(matrix, i, j)
    if isinstance(matrix, Entries):
        return matrix._entry(i, j)
    if isinstance(matrix, ZeroMatrix):
        return S.Zero
    if isinstance(matrix, OneMatrix):
        return S.One
    if isinstance(matrix, Identity):
        return S.One if i == j else S.Zero
    if isinstance(matrix, Transpose):
        return entry(matrix.arg, j, i)
    if isinstance(matrix, MatAdd):
        return Add(*[entry(t, i, j) for t in matrix.args])
    if isinstance(matrix, MatMul):
        coeff, product = split_scalar(matrix)
        if coeff != 1:
            return coeff * entry(product, i, j)
    if isinstance(matrix, Blocks):
        found = _block_entry(matrix, i, j)
        if found is not None:
            return found
    return MatrixElement(matrix, i, j)


def _block_entry(matrix: Blocks, i, j) -> Basic | None:
    rows, cols = _offsets(matrix.row_sizes), _offsets(matrix.col_sizes)
    if not all(isinstance(o, Integer) for o in rows + cols):
        return None
    r = max(k for k, o in enumerate(rows[:-1]) if o <= i)
    c = max(k for k, o in enumerate(cols[:-1]) if o <= j)
    return entry(matrix.grid[r][c], i - int(rows[r]), j - int(cols[c]))


# --- rebuilding closed forms ------------------------------------------------------------------------

# Closed forms are rebuilt with derive's constructors: they keep the result tidy (no identity
# factors, repeated terms collected, slices of blocks picked) and skip SymPy's argument validation,
# which asks each argument for its shape and so recurses down the whole adjoint chain: expanding
# the closed forms stays linear in depth.
_TIDY = {
    MatMul: mat_mul,
    MatAdd: mat_add,
    HadamardProduct: hadamard,
    HadamardPower: lambda base, power: Basic.__new__(HadamardPower, base, power),
    Transpose: lambda arg: transpose(arg, deep=False),
    MatrixElement: entry,
    MatrixSlice: lambda parent, rows, cols: (submatrix(parent, rows[:2], cols[:2]) if rows[2] == cols[2] == 1
                                             else MatrixSlice(parent, rows, cols)),
}


def substitute(expr: Basic, mapping: dict) -> Basic:
    """``expr.xreplace(mapping)``, rebuilt tidy, for expressions whose arguments are already valid."""
    memo: dict[Basic, Basic] = {}

    def walk(node: Basic) -> Basic:
        if node in mapping:
            return mapping[node]
        if node in memo:
            return memo[node]
        if isinstance(node, LEAVES) or not node.args:
            return node
        args = tuple(walk(a) for a in node.args)
        if all(new is old for new, old in zip(args, node.args)):
            rebuilt = node
        else:
            build = _TIDY.get(type(node))
            rebuilt = build(*args) if build is not None else node.func(*args)
        memo[node] = rebuilt
        return rebuilt

    return walk(expr)
