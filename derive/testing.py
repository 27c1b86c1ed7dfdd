"""Assertions for test suites and autograders: a failed check raises with the readable report."""

from __future__ import annotations

from collections.abc import Mapping

from sympy import Basic

from .checker.check import check
from .checker.results import CheckResult

__all__ = ["assert_gradient"]


def assert_gradient(hand, loss: Basic, wrt, *, names: Mapping | None = None, dims: Mapping | None = None,
                    points: int = 5, seed: int = 0) -> CheckResult:
    """Check a hand gradient like :func:`derive.check`; raise AssertionError with the report if wrong.

    Returns the result when the hand gradient is right. A formula that does not parse raises
    :class:`~derive.errors.ParseError` (a bad test, not a wrong answer).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    result = check(hand, loss, wrt, names=names, dims=dims, points=points, seed=seed)
    if not result:
        raise AssertionError(result.report())
    return result
