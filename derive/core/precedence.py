"""The printing precedence of a matrix product, as SymPy's own rule decides it but without ``doit``.

SymPy's ``precedence`` treats a ``MatMul`` as a ``Mul`` and asks ``could_extract_minus_sign``, which
builds ``-product`` and so calls ``MatMul.doit`` on the whole subtree below it. A printer asks this of
every product it parenthesizes, so printing a gradient costs time exponential in the network's depth
(``str(g[W1])`` of a 12-layer sigmoid MLP took 15 s). The same question is answered here by reading
the product's leading coefficient, as ``Mul.could_extract_minus_sign`` itself does after its
``self == -self`` guard (which only ever holds for a complex-infinite coefficient), registered in
SymPy's table for precedence functions, ``PRECEDENCE_FUNCTIONS``, which is there to be extended so.
"""

from __future__ import annotations

from sympy import S
from sympy.core.function import Function
from sympy.printing.precedence import PRECEDENCE, PRECEDENCE_FUNCTIONS

__all__ = ["leads_with_minus", "precedence_MatMul"]


def leads_with_minus(product) -> bool:
    """Whether a matrix product prints with a leading minus sign: its coefficient is a negative number
    (``Mul.could_extract_minus_sign`` without building ``-product``)."""
    coefficient = product.args[0] if product.args else S.One
    return bool(coefficient.is_Number and coefficient.is_extended_negative and coefficient is not S.ComplexInfinity)


def precedence_MatMul(item) -> int:
    """SymPy's ``precedence_Mul`` for a matrix product: Add's precedence when it prints with a leading
    minus sign (a negative number as its coefficient), Mul's otherwise."""
    if any(hasattr(arg, "precedence") and isinstance(arg, Function) and arg.precedence < PRECEDENCE["Mul"]
           for arg in item.args):
        return PRECEDENCE["Mul"]
    return PRECEDENCE["Add"] if leads_with_minus(item) else PRECEDENCE["Mul"]


PRECEDENCE_FUNCTIONS.setdefault("MatMul", precedence_MatMul)
