"""Run SymPy code with ``doit`` computed once per expression object: the same expressions, sooner.

SymPy's matrix operators finish with a deep ``doit()`` of the whole result (``A*B`` is
``MatMul(A, B).doit()``), and a deep ``doit`` walks its argument as a tree. A declaration that uses a
quantity twice (a block column ``[V; C V]``, a batch centring ``Z - 1 1^T Z / N``) is a DAG whose tree
doubles at each such layer, so every later product walks all of it again: one drawn network of four
such layers took 49 s to declare and 0.2 s to derive. Inside :func:`doit_once` every ``doit`` of an
immutable expression is remembered by the object's identity (the objects are kept alive, so an
identity is never reused), which makes each product walk the DAG once. ``doit`` is a pure function of
the expression and its hints, so the results are the expressions SymPy gives without the memo
(tests/test_doit_once.py compares both on drawn networks).
"""

from __future__ import annotations

from contextlib import contextmanager

from sympy import Basic


def _classes_defining_doit() -> set[type]:
    """Every class (SymPy's, derive's) whose own ``__dict__`` defines ``doit``, found from Basic down."""
    found, stack, seen = set(), [Basic], set()
    while stack:
        cls = stack.pop()
        found.update(k for k in cls.__mro__ if "doit" in k.__dict__)
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return found


def _remembered(original, memo: dict):
    def doit(self, *args, **hints):
        if not isinstance(self, Basic):   # a mutable Matrix may change between two calls
            return original(self, *args, **hints)
        # the original is part of the key: a subclass's doit calling super().doit is another question
        key = (id(self), original, args, tuple(sorted(hints.items())))
        try:
            hit = memo.get(key)
        except TypeError:                 # an unhashable hint: not remembered
            return original(self, *args, **hints)
        if hit is None:
            hit = memo[key] = (self, original(self, *args, **hints))   # self kept: its id stays its own
        return hit[1]
    doit.__wrapped__ = original
    return doit


@contextmanager
def doit_once():
    """Within the block, each expression object's ``doit`` (per hints) runs once."""
    memo: dict = {}
    originals = {cls: cls.__dict__["doit"] for cls in _classes_defining_doit()}
    try:
        for cls, original in originals.items():
            cls.doit = _remembered(original, memo)
        yield
    finally:
        for cls, original in originals.items():
            cls.doit = original
