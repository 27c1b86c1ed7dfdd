"""A matrix product's sign and precedence read off its coefficient, for every printer, and the text
printer (``str``) that uses it.

SymPy's printers ask a product ``could_extract_minus_sign`` (for its sign and its precedence), which
negates it, and negating a MatMul is a deep ``doit`` of its whole subtree; the printers ask again at
every level of the printed tree, so a deep network's loss or closed form took seconds to print as
text and minutes as LaTeX. A matrix product's sign is its leading numeric coefficient's.
"""

from __future__ import annotations

from sympy import MatMul
from sympy.printing.precedence import PRECEDENCE, precedence, precedence_traditional
from sympy.printing.str import StrPrinter

# the one reading of a product's sign, shared with the precedence registered for SymPy's own printers
from ..core.precedence import leads_with_minus as negative_coefficient

__all__ = ["DeriveStrPrinter", "negative_coefficient", "product_precedence", "text"]


def product_precedence(item, of=precedence_traditional) -> int:
    if isinstance(item, MatMul):
        return PRECEDENCE["Add"] if negative_coefficient(item) else PRECEDENCE["Mul"]
    return of(item)


class DeriveStrPrinter(StrPrinter):
    """SymPy's ``str``, with a matrix product's sign and precedence read off its coefficient."""

    def parenthesize(self, item, level, strict=False):
        prec = product_precedence(item, precedence)
        if prec < level or (not strict and prec <= level):
            return f"({self._print(item)})"
        return self._print(item)

    def _print_Add(self, expr, order=None):
        # SymPy's (a MatAdd prints here too), with each term's precedence from product_precedence
        level, out = product_precedence(expr, precedence), []
        for term in self._as_ordered_terms(expr, order=order):
            printed = self._print(term)
            sign = "-" if printed.startswith("-") and not term.is_Add else "+"
            printed = printed[1:] if sign == "-" else printed
            if product_precedence(term, precedence) < level or term.is_Add:
                printed = f"({printed})"
            out.extend([sign, printed])
        return ("" if out[0] == "+" else "-") + " ".join(out[1:])

    def _print_MatMul(self, expr):
        args = list(expr.args)
        sign = ""
        if negative_coefficient(expr):
            sign, args[0] = "-", -args[0]
            if args[0] == 1:
                args = args[1:]
        level = PRECEDENCE["Mul"]
        return sign + "*".join(self.parenthesize(arg, level) for arg in args)


def text(expr) -> str:
    """``str(expr)``, in the time its size takes (see :class:`DeriveStrPrinter`)."""
    return DeriveStrPrinter().doprint(expr)
