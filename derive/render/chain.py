"""The matrix-chain part of the NumPy printer: the cheapest association of a product and how each
pair is spelled (``@``, a ones-matrix read as a sum, a broadcast factor read as what it stands for).

A mixin of :class:`~derive.render.numpy.DeriveNumPyPrinter` (and so of the torch and JAX printers): it
reads the printer's ``_print``, ``_scalar`` and ``products`` (each ``@`` it writes, with its shape, for
:mod:`.reuse`).
"""

from __future__ import annotations

from .layout import Layout, Operand, size

__all__ = ["ProductChains"]


class ProductChains:
    """Association and spelling of matrix products, for a printer that tracks layouts."""

    def _scaled_side(self, coeff, product: Operand) -> tuple[Operand, object]:
        """``c (L @ R)`` as ``(c L) @ R`` (or ``L @ (c R)``) where that side is smaller: one pass over
        Q = X Wq, not over the N x N scores; the outermost product's sides, so that the products inside
        them can be shared with other statements. (product, the coefficient left to apply)."""
        left, right = product.parts
        side = min((left, right), key=lambda o: o.area)
        if side.ones or side.area >= product.area:
            return product, coeff
        scaled = Operand(f"{self._scalar(coeff)} * {side.wrapped()}", side.rows, side.cols, side.layout, atomic=False)
        return self._pair(scaled, right)[1] if side is left else self._pair(left, scaled)[1], 1

    def _chain(self, operands: list[Operand]) -> Operand:
        """The cheapest association of a product chain (dynamic programming over split points)."""
        n = len(operands)
        best: dict[tuple[int, int], tuple[int, Operand]] = {(i, i): (0, operands[i]) for i in range(n)}
        for length in range(2, n + 1):
            for i in range(n - length + 1):
                j = i + length - 1
                options = []
                for k in range(i, j):
                    (cost_l, left), (cost_r, right) = best[(i, k)], best[(k + 1, j)]
                    cost, joined = self._pair(left, right)
                    options.append((cost_l + cost_r + cost, k, joined))
                cost, _, joined = min(options, key=lambda o: (o[0], o[1]))
                best[(i, j)] = (cost, joined)
        return best[(0, n - 1)][1]

    def _pair(self, left: Operand, right: Operand) -> tuple[int, Operand]:
        """One product, with ones-matrices read as sums (1^T G sums G's rows, G 1 its columns) and
        broadcast factors read as what they stand for (the rows of a row-broadcast G are all equal,
        so 1^T G is its row times their count)."""
        rows, cols, inner = left.rows, right.cols, left.cols
        if left.ones and right.ones:
            return 0, Operand(self._scalar(inner), rows, cols, Layout.of((rows, cols), scalar=True))
        if left.ones:
            # 1_(m x n) G: every row of the result is the column sum of G (broadcast when m > 1)
            code, layout, atomic = self._sum_rows(right)
            return (size(right.rows) * size(right.cols),
                    Operand(code, rows, cols, Layout.of((rows, cols), True, layout.cols, layout.scalar), atomic=atomic))
        if right.ones:
            code, layout, atomic = self._sum_cols(left)
            return (size(left.rows) * size(left.cols),
                    Operand(code, rows, cols, Layout.of((rows, cols), layout.rows, True, layout.scalar), atomic=atomic))
        cost = size(left.rows) * size(left.cols) * size(right.cols)
        outer = (left.layout.rows, right.layout.cols)
        if inner == 1 and ((left.rows, left.cols) == (1, 1) or (right.rows, right.cols) == (1, 1)
                           or left.layout.scalar or right.layout.scalar):
            # a product with a 1 x 1 factor (or a 0-d one) is a broadcast product, and takes the 1 x 1
            # identity printed as 1
            layout = Layout.of((rows, cols), *outer, left.layout.scalar and right.layout.scalar)
            return cost, Operand(f"{left.wrapped()} * {right.wrapped()}", rows, cols, layout, atomic=False)
        if inner != 1 and left.layout.cols and right.layout.rows:
            # every entry of each row of left is equal, and of each column of right: inner terms alike
            layout = Layout.of((rows, cols), *outer, left.layout.scalar and right.layout.scalar)
            code = f"{self._scalar(inner)} * {left.wrapped()} * {right.wrapped()}"
            return cost, Operand(code, rows, cols, layout, atomic=False)
        if inner != 1 and left.layout.cols:
            # L 1 l^T-like: each row of left is one value, times the column sums of right
            code = f"{left.wrapped()} * {right.wrapped()}.sum(axis=0, keepdims=True)"
            return cost, Operand(code, rows, cols, Layout.of((rows, cols), *outer), atomic=False)
        if inner != 1 and right.layout.rows:
            code = f"{left.wrapped()}.sum(axis=1, keepdims=True) * {right.wrapped()}"
            return cost, Operand(code, rows, cols, Layout.of((rows, cols), *outer), atomic=False)
        code = f"{left.wrapped()} @ {right.wrapped()}"
        layout = Layout.of((rows, cols), *outer)
        held = ", held as one row" if layout.rows else ", held as one column" if layout.cols else ""
        self.products[code] = f"{self._print(rows)} x {self._print(cols)}{held}"
        return cost, Operand(code, rows, cols, layout, atomic=False, parts=(left, right))

    def _sum_rows(self, operand: Operand) -> tuple[str, Layout, bool]:
        """The column sums of ``operand`` as a row: (code, its layout, atomic)."""
        if operand.rows == 1:
            return operand.code, operand.layout, operand.atomic
        if operand.layout.rows:
            # its rows are all equal: their sum is the one row times their number
            return f"{self._scalar(operand.rows)} * {operand.wrapped()}", operand.layout, False
        return f"{operand.wrapped()}.sum(axis=0, keepdims=True)", operand.layout, False

    def _sum_cols(self, operand: Operand) -> tuple[str, Layout, bool]:
        """The row sums of ``operand`` as a column: (code, its layout, atomic)."""
        if operand.cols == 1:
            return operand.code, operand.layout, operand.atomic
        if operand.layout.cols:
            return f"{self._scalar(operand.cols)} * {operand.wrapped()}", operand.layout, False
        return f"{operand.wrapped()}.sum(axis=1, keepdims=True)", operand.layout, False
