"""The pytest plugin (entry point ``derive`` in pytest11): hand-derivation reports in failure output.

* ``assert derive.check(hand, loss, W)`` that fails gets a "derive check" section with the full
  report of every failed check the test made (pytest itself shows only a one-line repr);
* ``assert_gradient`` fixture: :func:`derive.testing.assert_gradient`, whose AssertionError message
  is the report;
* ``assert result == True`` (a result compared with anything) gets a short verdict in pytest's
  explanation and the full report in the section.
"""

from __future__ import annotations

import pytest

from .checker.check import recording_failures
from .checker.results import CheckResult
from .testing import assert_gradient as _assert_gradient

_FAILED_KEY = pytest.StashKey[list]()


@pytest.fixture
def assert_gradient():
    """:func:`derive.testing.assert_gradient`, for tests that prefer a fixture to an import."""
    return _assert_gradient


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with recording_failures() as failed:
        item.stash[_FAILED_KEY] = failed
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed:
        return
    failed = item.stash.get(_FAILED_KEY, [])
    if failed and not _message_has_report(call):
        report.sections.append(("derive check", "\n\n".join(r.report() for r in failed)))


def _message_has_report(call) -> bool:
    # assert_gradient's message already is the report: do not show it twice.
    return call.excinfo is not None and "derived:  " in str(call.excinfo.value)


def pytest_assertrepr_compare(config, op, left, right):
    """A short verdict in the explanation (pytest cuts long ones); the full report is in the section."""
    for side in (left, right):
        if isinstance(side, CheckResult) and not side.ok:
            other = right if side is left else left
            verdict = side.diagnosis.message if side.diagnosis else "no simple slip explains the difference"
            return [f"{side!r} {op} {other!r}", f"hand: {side.hand}", f"derived: {side.derived}",
                    f"{side.diagnosis.kind if side.diagnosis else 'diagnosis'}: {verdict}",
                    "(the full report is in the 'derive check' section below)"]
    return None
