"""How a printed NumPy array's shape differs from its matrix's declared shape (:class:`Layout`),
and the factors of a matrix chain the NumPy printer associates (:class:`Operand`).

A broadcast bias ``1 b`` prints as the row ``b``: its array has one row standing for all of them.
The NumPy printer records such layouts and passes them only to the operations that broadcast them
back (a sum, a Hadamard product, a product's outer side).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "Layout", "Operand", "combined", "size"]

# Cost of a matrix product in the association search when a dimension is a symbol (N, H ...).
_SYMBOLIC_DIM = 1000


def size(dim) -> int:
    try:
        return int(dim)
    except TypeError:
        return _SYMBOLIC_DIM


@dataclass(frozen=True)
class Layout:
    """How a printed array's shape differs from its matrix's declared shape.

    ``rows``: the array has one row standing for all of them (every row equal), so it broadcasts
    along the rows; ``cols`` likewise; ``scalar``: it is a 0-d value (a number, ``t[0, 0]``) standing
    for a matrix with every entry equal. An axis declared of size 1 is never flagged.
    """

    rows: bool = False
    cols: bool = False
    scalar: bool = False

    @classmethod
    def of(cls, shape, rows: bool = False, cols: bool = False, scalar: bool = False) -> Layout:
        return cls(bool((rows or scalar) and shape[0] != 1), bool((cols or scalar) and shape[1] != 1), scalar)

    @property
    def full(self) -> bool:
        """The array has the declared shape."""
        return not (self.rows or self.cols or self.scalar)

    def transposed(self) -> Layout:
        return Layout(self.cols, self.rows, self.scalar)


FULL = Layout()


def combined(layouts) -> Layout:
    """The layout of an elementwise combination (a sum, a Hadamard product) of equally declared arrays."""
    layouts = list(layouts)
    return Layout(all(lay.rows for lay in layouts), all(lay.cols for lay in layouts),
                  all(lay.scalar for lay in layouts))


class Operand:
    """A printed factor of a matrix chain: its declared shape, its layout, whether it is a ones-matrix,
    and for a product ``left @ right`` its two sides."""

    def __init__(self, code: str, rows, cols, layout: Layout = FULL, ones: bool = False, atomic: bool = True,
                 parts: tuple[Operand, Operand] | None = None):
        self.code, self.rows, self.cols, self.layout, self.ones, self.atomic = code, rows, cols, layout, ones, atomic
        self.parts = parts   # the two sides, for a product printed as left @ right

    @property
    def area(self) -> int:
        return size(self.rows) * size(self.cols)

    def wrapped(self) -> str:
        return self.code if self.atomic else f"({self.code})"

