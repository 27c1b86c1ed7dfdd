"""Reports a student can act on: entries numbered from 1, a stable order, 4 significant digits, a
short counterexample, the suggestion written as a student would write it, the bias and
pre-activation diagnoses (each suggestion right by the independent truth), the command's "derive:"
prefix and a --help without dead options."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import derive
from derive.checker.formula import to_text
from derive.checker.grammar import parse
from derive.checker.network import NetworkView
from derive.checker.tidy import tidy
from derive.cli import build_parser, run_check
from derive.errors import DeriveError
from derive.examples import get

from .test_check_properties import ROWS, example_of, mutations

ROOT = Path(__file__).resolve().parents[2]

WRONG = [
    ("seed_000_bce", "w2", "h^T (p - y)"),
    ("seed_000_bce", "w1", "X^T (dL/dz w2^T)"),
    ("mlp3_gelu", "W1", "X^T (dL/dZ2 W2^T)"),
    ("seed_003_mlp_column", "W1", "x^T da1"),
]


def check(name, wrt, hand):
    example = get(name)
    return derive.check(hand, example.loss, wrt, names=example.names)


@pytest.mark.parametrize(("name", "wrt", "hand"), WRONG)
def test_a_counterexample_is_short_numbered_from_1_with_4_significant_digits(name, wrt, hand):
    result = check(name, wrt, hand)
    report = result.report()
    lines = report.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith("  differs at")), None)
    if start is None:                       # a shape problem: no entry to show
        assert result.shape_problem
        return
    block = lines[start:start + 5]
    assert len([line for line in lines if line.startswith("    ") and "where" not in line]) <= 6, report
    assert all(len(line) <= 170 for line in block), report
    i, j = (int(k) for k in re.search(r"first in entry \[(\d+), (\d+)\]", report).groups())
    assert (i, j) == (result.counterexample.entry[0] + 1, result.counterexample.entry[1] + 1)
    assert not re.search(r"\[0, |, 0\]", "\n".join(block)), report     # no entry 0 anywhere
    for number in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", "\n".join(block)):
        assert len(number.lstrip("-").split("e")[0].replace(".", "").lstrip("0")) <= 4, number


def test_the_report_is_the_same_from_run_to_run():
    code = ("import derive; from derive.examples import get; e = get('residual_block'); "
            "print(derive.check(\"X^T (dL/dH2 ⊙ relu'(Z1))\", e.loss, 'W1', names=e.names).report())")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1 and "where dL/dZ1" in outputs.pop()


# (network, parameter, a wrong answer, the diagnosis, the suggestion a student would write)
SUGGESTIONS = [
    ("seed_001_linreg_batch", "w", "1/N X^T (yhat - y)", "factor", "2/N X^T (yhat - y)"),
    ("seed_000_bce", "w1", "((p - y)/N w2^T ⊙ 1[a > 0])^T X", "transpose", "X^T ((p - y)/N w2^T ⊙ 1[a > 0])"),
    ("seed_001_two_linear", "W2", "2/N (yhat - y)^T H", "transpose", "2/N H^T (yhat - y)"),
    # a bias: the batch sum missing, the 1/N of the mean missing, both
    ("seed_000_bce", "b", "(p - y)/N", "missing-batch-sum", "1^T (p - y)/N"),
    ("seed_000_bce", "b", "dL/dz", "missing-batch-sum", "1^T dL/dz"),
    ("seed_000_bce", "b", "p - y", "missing-batch-sum", "1/N 1^T (p - y)"),
    ("seed_001_two_linear", "b2", "2 (yhat - y)", "missing-batch-sum", "2/N 1^T (yhat - y)"),
    ("seed_001_two_linear", "b1", "dL/dyhat W2^T", "missing-batch-sum", "1^T dL/dyhat W2^T"),
    ("seed_000_bce", "b", "1^T (p - y)", "factor", "1/N 1^T (p - y)"),
    # the gradient of the pre-activation written for the weight's
    ("seed_000_bce", "w2", "(p - y)/N", "pre-activation", "h^T (p - y)/N"),
    ("seed_000_bce", "w2", "dL/dz", "pre-activation", "h^T dL/dz"),
    ("mlp3_relu", "W3", "dL/dS", "pre-activation", "H2^T dL/dS"),
]


@pytest.mark.parametrize(("name", "wrt", "hand", "kind", "corrected"), SUGGESTIONS)
def test_a_suggestion_is_written_as_a_student_would_and_is_right(name, wrt, hand, kind, corrected):
    result = check(name, wrt, hand)
    assert not result
    assert result.diagnosis.kind == kind, result.report()
    assert result.diagnosis.corrected == corrected
    assert f"    right:  {corrected}" in result.report()
    pytest.importorskip("torch", reason="autograd gives the independent truth's gradients")
    from ..hand_truth import HandTruth
    example = get(name)
    truth = HandTruth(example.loss, next(p for p in example.wrt if p.name == wrt), example.names)
    assert truth.verdict(hand) == "wrong"
    assert truth.verdict(corrected) == "right"


@pytest.mark.parametrize(("hand", "wrt"), [("h^T (p - y", "w2"), ("h^T (p - y)/N", "W9"), ("q", "w2")])
def test_the_check_command_says_derive_on_bad_input(hand, wrt):
    code, text = run_check("seed_000_bce", wrt, hand)
    assert code == 2 and text.startswith("derive: ")


@pytest.mark.parametrize(("command", "dead"), [
    (["check", "seed_000_bce", "--wrt", "w2", "--hand", "h"], {"--output-dir", "--force"}),
    (["list"], {"--output-dir", "--force", "--convention"}),
    (["grade", "hw.toml"], {"--output-dir", "--force", "--convention"}),
])
def test_help_lists_only_options_that_do_something(command, dead):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command[0]]
    shown = {s for action in sub._actions for s in action.option_strings}
    assert not shown & dead
    assert "--verbose" in shown


# --- tidying keeps the value (the suggestion is the corrected formula, only written as a student would) ---

@settings(max_examples=max(10, settings().max_examples // 5), deadline=None)
@given(data=st.data())
def test_tidying_a_formula_keeps_its_value(data):
    row = data.draw(st.sampled_from(ROWS), label="right answer")
    _, text = data.draw(mutations(row), label="mutation")
    example = example_of(row[1])
    net = NetworkView(example.loss, next(p for p in example.wrt if p.name == row[2]), example.names, None)
    try:
        tree = parse(text, net.scope)
        point = net.points(1, seed=2)[0]
        before = net.numeric(tree, point)
    except (DeriveError, ZeroDivisionError):
        return                                   # not a formula that has a value: nothing to keep
    tidied = tidy(tree)
    assert np.allclose(net.numeric(tidied, point), before, rtol=1e-9, atol=1e-12, equal_nan=True), to_text(tidied)
    assert np.allclose(net.numeric(parse(to_text(tidied), net.scope), point), before, rtol=1e-9, atol=1e-12,
                       equal_nan=True), to_text(tidied)       # and its text reads back the same


TIDIED = [
    # (network, parameter, a formula, as tidied)
    ("mlp3_gelu_columns", "b1", "dL/dZ1 1", "dL/dZ1 1"),                 # a ones vector, not the scalar 1
    ("mlp3_gelu_columns", "b1", "(dL/dZ1 1)^T", "1^T dL/dZ1^T"),
    ("mlp3_gelu_columns", "b1", "2 (1^T dL/dZ1^T)^T / N", "2 (dL/dZ1 1)/N"),
    ("seed_000_bce", "w2", "2 (1/N (p - y)^T h)^T", "2/N h^T (p - y)"),
    ("seed_000_bce", "w2", "-(-(h^T (p - y)))", "h^T (p - y)"),
    ("seed_000_bce", "w1", "(((p - y)/N w2^T ⊙ 1[a > 0])^T X)^T", "X^T ((p - y)/N w2^T ⊙ 1[a > 0])"),
]


@pytest.mark.parametrize(("name", "wrt", "text", "tidied"), TIDIED)
def test_a_tidied_formula_reads_as_written_and_keeps_its_value(name, wrt, text, tidied):
    example = example_of(name)
    net = NetworkView(example.loss, next(p for p in example.wrt if p.name == wrt), example.names, None)
    tree = parse(text, net.scope)
    assert to_text(tidy(tree)) == tidied
    point = net.points(1, seed=2)[0]
    assert np.allclose(net.numeric(parse(tidied, net.scope), point), net.numeric(tree, point), rtol=1e-9)


def test_the_check_command_takes_every_matrix_its_error_lists():
    """The unknown-name message lists dL/dX among the known gradients; --wrt X is then accepted too,
    and its verdict is the independent truth's."""
    code, text = run_check("seed_000_bce", "w2", "q")
    assert "dL/dX" in text
    code, text = run_check("seed_000_bce", "X", "dL/da w1^T")
    assert code == 0, text
    pytest.importorskip("torch", reason="autograd gives the independent truth's gradients")
    from ..hand_truth import HandTruth
    example = get("seed_000_bce")
    X = next(s for s in example.loss.free_symbols if getattr(s, "name", "") == "X")
    assert HandTruth(example.loss, X, example.names).verdict("dL/da w1^T") == "right"
