"""An exact test that an expression is identically zero, by evaluation in the integers modulo a prime.

``vanishes(expr)`` reads ``expr`` as a rational function of its unknowns, every function application
(``exp(...)``, ``Sigmoid(...)``, ``log(...)``) and irrational power (``sqrt(2)``) taken as one more
independent unknown, and evaluates it exactly at random points of the field of integers modulo the
prime 2^61 - 1. A rational function that is not zero, of total degree d, vanishes at a random point
with probability at most d / 2^61 (Schwartz and Zippel), so zero at two points means it is zero.
Zero as such a function implies zero as an expression, whatever the applications are; a difference
that cancels only through an identity between them (``exp(a + b) = exp(a) exp(b)``) is not seen,
and the caller falls back on SymPy's expansion. It costs one pass over the expression's DAG where
expanding it can take seconds.
"""

from __future__ import annotations

import random

from sympy import Add, Basic, Mul, Pow, Rational

__all__ = ["PRIME", "vanishes"]

PRIME = 2**61 - 1


class _Unreadable(Exception):
    """Something that is not exact arithmetic (a float, an unevaluated sum)."""


def vanishes(expr: Basic, points: int = 2, seed: int = 0) -> bool | None:
    """True when ``expr`` is identically zero (see the module's docstring); False when it is not as a
    function of free unknowns; None when it holds what exact arithmetic cannot read (a float)."""
    rng = random.Random(seed)
    tried = 0
    for _ in range(points):
        while True:
            tried += 1
            try:
                value = _value(expr, {}, rng)
                break
            except ZeroDivisionError:   # a denominator vanished at this point: draw another
                if tried > 4 * points:
                    return None
            except _Unreadable:
                return None
        if value != 0:
            return False
    return True


def _value(root: Basic, unknowns: dict, rng: random.Random) -> int:
    """``root`` at one random point: each unknown (a symbol, a matrix entry, a function application)
    drawn once, each node of the DAG computed once."""
    done: dict[Basic, int] = {}
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if node in done:
            continue
        if isinstance(node, (Add, Mul)) or (isinstance(node, Pow) and node.exp.is_Integer):
            if not ready:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args if a not in done)
                continue
            done[node] = _combine(node, done)
        else:
            done[node] = _leaf(node, unknowns, rng)
    return done[root]


def _combine(node: Basic, done: dict) -> int:
    if isinstance(node, Add):
        return sum(done[a] for a in node.args) % PRIME
    if isinstance(node, Mul):
        product = 1
        for a in node.args:
            product = product * done[a] % PRIME
        return product
    base, power = done[node.base], int(node.exp)
    if base == 0 and power < 0:
        raise ZeroDivisionError
    return pow(base, power, PRIME)


def _leaf(node: Basic, unknowns: dict, rng: random.Random) -> int:
    if isinstance(node, Rational):   # Integer too
        return node.p * pow(node.q, -1, PRIME) % PRIME
    if node.is_Number:
        raise _Unreadable(node)     # a float, an infinity
    if node not in unknowns:        # a symbol, a matrix entry, pi, sqrt(2), a function application
        unknowns[node] = rng.randrange(1, PRIME)
    return unknowns[node]
