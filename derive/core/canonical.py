"""SymPy spellings rewritten into derive's node vocabulary before the graph is built.

Some ways of writing a network hide its structure from a graph walk over ``args``: SymPy keeps
the blocks of a ``BlockMatrix`` and the entries of an explicit ``Matrix`` inside an explicit matrix
(a leaf of derive's graph), folds ``Inverse(A)*Inverse(A)`` into ``A**-2``, and expands the entry
of a product with symbolic dims, ``(x.T*A*x)[0, 0]``, into an index ``Sum``. :func:`canonical`
rewrites them, bottom-up and memoised over the DAG, into nodes whose arguments the graph sees:

* ``BlockMatrix`` -> :class:`Blocks`, whose arguments are the blocks themselves;
* an explicit matrix whose entries use a MatrixSymbol -> :class:`Entries`, whose arguments are the
  scalar entries (a constant explicit matrix stays a leaf);
* ``A**-k`` -> ``Inverse(A)**k``, and ``A**0`` -> ``I``;
* an index ``Sum`` -> SymPy's own ``MatrixExpr.from_index_summation``, checked against the sum it
  came from at small concrete dims; a sum that cannot be turned back is refused in words.

The rewriting never touches what the user declared: the truth (``g.elementwise``, ``g.verify``)
expands the declared loss, so a mistake here cannot hide itself.
"""

from __future__ import annotations

from sympy import (
    Add,
    Atom,
    Basic,
    BlockMatrix,
    Dummy,
    Identity,
    Integer,
    Inverse,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    OneMatrix,
    S,
    Sum,
    ZeroMatrix,
    expand,
)
from sympy.core.operations import AssocOp
from sympy.matrices import ImmutableMatrix, MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import UnsupportedOperation

__all__ = ["Blocks", "Entries", "canonical"]


# --- derive's nodes for blocks and entries ----------------------------------------------------------

class Blocks(MatrixExpr):
    """A block matrix whose arguments are its blocks: ``Blocks(columns, *blocks)``, row by row.

    ``columns`` is the number of block columns. The blocks' sizes are their own shapes, so the
    graph, the rules and the printers see every block as an ordinary argument.
    """

    def __new__(cls, columns, *blocks):
        columns = Integer(columns)
        if not blocks or len(blocks) % int(columns):
            raise ValueError(f"Blocks: {len(blocks)} blocks do not fill rows of {columns}")
        node = MatrixExpr.__new__(cls, columns, *blocks)
        # SymPy computes a shape by recursing to the leaves; keep it, as Elementwise does
        node._shape = (Add(*[b.rows for b in node.grid_column(0)]), Add(*[b.cols for b in node.grid_row(0)]))
        return node

    @classmethod
    def from_grid(cls, grid) -> Blocks:
        return cls(len(grid[0]), *[block for row in grid for block in row])

    @property
    def shape(self):
        return self._shape

    @property
    def columns(self) -> int:
        return int(self.args[0])

    @property
    def blocks(self) -> tuple:
        return self.args[1:]

    @property
    def grid(self) -> list[list[Basic]]:
        c = self.columns
        return [list(self.blocks[k:k + c]) for k in range(0, len(self.blocks), c)]

    def grid_row(self, r: int) -> list:
        return list(self.blocks[r * self.columns:(r + 1) * self.columns])

    def grid_column(self, c: int) -> list:
        return list(self.blocks[c::self.columns])

    @property
    def row_sizes(self) -> list:
        return [b.rows for b in self.grid_column(0)]

    @property
    def col_sizes(self) -> list:
        return [b.cols for b in self.grid_row(0)]

    def spans(self) -> list[tuple[tuple, tuple]]:
        """((row start, row stop), (column start, column stop)) of every block, row by row."""
        rows, cols = _offsets(self.row_sizes), _offsets(self.col_sizes)
        return [((rows[r], rows[r + 1]), (cols[c], cols[c + 1]))
                for r in range(len(rows) - 1) for c in range(len(cols) - 1)]

    def as_block_matrix(self) -> BlockMatrix:
        return BlockMatrix(self.grid)

    def _entry(self, i, j, **kwargs):
        return self.as_block_matrix()._entry(i, j, **kwargs)

    def _sympystr(self, printer):
        rows = ", ".join("[" + ", ".join(printer._print(b) for b in row) + "]" for row in self.grid)
        return f"BlockMatrix([{rows}])"


class Entries(MatrixExpr):
    """An explicit matrix whose arguments are its scalar entries: ``Entries(columns, *entries)``."""

    def __new__(cls, columns, *entries):
        columns = Integer(columns)
        if not entries or len(entries) % int(columns):
            raise ValueError(f"Entries: {len(entries)} entries do not fill rows of {columns}")
        return MatrixExpr.__new__(cls, columns, *entries)

    @classmethod
    def from_rows(cls, rows) -> Entries:
        return cls(len(rows[0]), *[e for row in rows for e in row])

    @property
    def shape(self):
        return (Integer((len(self.args) - 1) // int(self.args[0])), self.args[0])

    @property
    def columns(self) -> int:
        return int(self.args[0])

    @property
    def entries(self) -> tuple:
        return self.args[1:]

    @property
    def rows_of_entries(self) -> list[list[Basic]]:
        c = self.columns
        return [list(self.entries[k:k + c]) for k in range(0, len(self.entries), c)]

    def positions(self) -> list[tuple[int, int]]:
        c = self.columns
        return [divmod(k, c) for k in range(len(self.entries))]

    def _entry(self, i, j, **kwargs):
        if isinstance(i, (int, Integer)) and isinstance(j, (int, Integer)):
            return self.entries[int(i) * self.columns + int(j)]
        return MatrixElement(self, i, j)

    def as_explicit(self):
        return ImmutableMatrix(self.rows_of_entries)

    def _sympystr(self, printer):
        rows = ", ".join("[" + ", ".join(printer._print(e) for e in row) + "]" for row in self.rows_of_entries)
        return f"Matrix([{rows}])"


def _offsets(sizes) -> list:
    out = [S.Zero]
    for size in sizes:
        out.append(out[-1] + size)
    return out


# --- the rewriting ---------------------------------------------------------------------------------

_LEAVES = (Atom, MatrixSymbol, OneMatrix, ZeroMatrix, Identity)


def canonical(expr: Basic, memo: dict | None = None) -> Basic:
    """``expr`` with blocks, parameter-dependent explicit matrices, negative powers and index sums
    written in derive's vocabulary; ``expr`` itself when there are none. ``memo`` is shared between
    calls, so the loss and the names given for its parts map to the same nodes."""
    memo = {} if memo is None else memo
    stack: list[tuple[Basic, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in memo:
            continue
        if ready:
            memo[node] = _rewrite(node, memo)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if child not in memo)
    return memo[expr]


def _children(node: Basic) -> list:
    if isinstance(node, (Sum, *_LEAVES)):
        return []  # an index sum is turned into matrix form first, then rewritten (see _rewrite)
    if isinstance(node, BlockMatrix):
        return list(node.blocks)
    if isinstance(node, MatrixBase):
        return list(node) if _uses_matrices(node) else []
    return list(node.args)


def _uses_matrices(explicit: MatrixBase) -> bool:
    return any(entry.atoms(MatrixSymbol) for entry in explicit)


def _rewrite(node: Basic, memo: dict) -> Basic:
    if isinstance(node, Sum):
        return canonical(from_index_sum(node), memo)
    if isinstance(node, BlockMatrix):
        grid = node.blocks
        blocks = [memo[b] for b in grid]
        return blocks[0] if len(blocks) == 1 else Blocks(grid.cols, *blocks)
    if isinstance(node, MatrixBase):
        if not _uses_matrices(node):
            return node
        return Entries(node.cols, *[memo[e] for e in node])
    if isinstance(node, _LEAVES):
        return node
    args = [memo[a] for a in node.args]
    if isinstance(node, MatPow):
        return _power(args[0], args[1]) or _rebuilt(node, args)
    return _rebuilt(node, args)


def _rebuilt(node: Basic, args: list) -> Basic:
    if all(new is old for new, old in zip(args, node.args)):
        return node
    if isinstance(node, AssocOp):
        return node.func(*args, evaluate=False)
    return node.func(*args)


def _power(base: Basic, power: Basic) -> Basic | None:
    """``A**-k`` as a power of the inverse (what SymPy makes of ``Inverse(A)*Inverse(A)``), ``A**0`` as I."""
    if not (isinstance(power, Integer) and power <= 0):
        return None
    if power == 0:
        return Identity(base.rows)
    inverse = Inverse(base)
    return inverse if power == -1 else MatPow(inverse, -power)


# --- index sums ------------------------------------------------------------------------------------

# The conversion is checked by expanding both sides at dims 2, 3, 4 ...; a sum bigger than this many
# terms there is not expanded (SymPy's conversion is then trusted).
SUM_CHECK_TERMS = 4096


def from_index_sum(node: Sum) -> Basic:
    """The matrix form of an index sum, as a scalar: ``Sum(A[i, j] x[i] x[j])`` -> ``(x.T*A*x)[0, 0]``.

    Terms are converted one by one, factors free of the indices pulled out, and the result checked
    against the sum at small concrete dims, so a conversion that changed the value is refused.
    """
    limits = node.limits
    terms = Add.make_args(expand(node.function, deep=False, power_base=False, power_exp=False, log=False))
    converted = Add(*[_convert_term(node, term, limits) for term in terms])
    _check_conversion(node, converted)
    return converted


def _convert_term(node: Sum, term: Basic, limits) -> Basic:
    indices = {limit[0] for limit in limits}
    coeff, rest = S.One, []
    for factor in Mul.make_args(term):
        if not factor.free_symbols & indices:
            coeff *= factor
        elif factor.is_Pow and factor.exp.is_Integer and factor.exp > 1:
            rest.extend([factor.base] * int(factor.exp))  # x_i^2 as x_i x_i, which SymPy can contract
        else:
            rest.append(factor)
    body = rest[0] if len(rest) == 1 else Mul(*rest, evaluate=False)
    kept = []
    for index, low, high in limits:
        if index in body.free_symbols:
            kept.append((index, low, high))
        else:
            coeff *= high - low + 1  # a sum of a term free of its index: that many copies
    if not rest:
        return coeff
    try:
        matrix_form = MatrixExpr.from_index_summation(Sum(body, *kept))
    except Exception as error:  # SymPy raises ValueError, IndexError, TypeError ... on what it cannot read
        raise _unconvertible(node, f"SymPy cannot turn it back into matrix form ({type(error).__name__}: "
                                   f"{error})") from error
    return coeff * _as_scalar(node, matrix_form, indices)


def _as_scalar(node: Sum, matrix_form: Basic, indices: set) -> Basic:
    for part in _walk(matrix_form):
        if type(part).__module__.startswith("sympy.tensor") or isinstance(part, Sum):
            raise _unconvertible(node, f"SymPy turns it into {matrix_form}, which is not a matrix expression")
    if matrix_form.free_symbols & indices or matrix_form.atoms(Dummy) & indices:
        raise _unconvertible(node, f"SymPy turns it into {matrix_form}, which still has a summation index")
    if isinstance(matrix_form, MatrixExpr):
        if matrix_form.shape != (1, 1):
            raise _unconvertible(node, f"SymPy turns it into {matrix_form}, a {matrix_form.shape[0]} x "
                                       f"{matrix_form.shape[1]} matrix rather than a scalar")
        return MatrixElement(matrix_form, 0, 0)
    return matrix_form


def _walk(expr: Basic):
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.args)


def _unconvertible(node: Sum, why: str) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"the index sum {node} (SymPy writes the entry of a matrix product with symbolic dims, such as "
        f"(x.T*A*x)[0, 0], as one) cannot be differentiated: {why}; write the 1 x 1 product itself "
        "(x.T*A*x), a trace or a sum of entries 1^T A 1 instead")


def _check_conversion(node: Sum, converted: Basic) -> None:
    dims = _small_dims(node)
    sizes = [int((high - low + 1).xreplace(dims)) for _, low, high in node.limits]
    terms = 1
    for size in sizes:
        terms *= max(size, 0)
    if terms > SUM_CHECK_TERMS:
        return
    expected = node.xreplace(dims).doit()
    got = _explicit_scalar(converted.xreplace(dims))
    if expand(expected - got) != 0:
        raise _unconvertible(node, f"SymPy turns it into {converted}, which differs from it at {dims}")


def _small_dims(node: Sum) -> dict:
    """Distinct small sizes for the dimension symbols (so that a transposition shows)."""
    symbols = set()
    for part in _walk(node):
        if isinstance(part, MatrixSymbol):
            for d in part.shape:
                symbols |= d.free_symbols
    for _, low, high in node.limits:
        symbols |= (low.free_symbols | high.free_symbols)
    symbols -= {limit[0] for limit in node.limits}
    return {s: Integer(2 + k) for k, s in enumerate(sorted(symbols, key=str))}


def _explicit_scalar(expr: Basic) -> Basic:
    """A scalar of matrix expressions at concrete dims, written in the matrices' entries."""
    leaves = {part: part.as_explicit() for part in _walk(expr)
              if isinstance(part, (MatrixSymbol, OneMatrix, ZeroMatrix, Identity))}
    value = expr.xreplace(leaves).doit()
    return value[0, 0] if isinstance(value, MatrixBase) else value
