"""Property test of the hand checker: every slip made on a right answer gets a verdict, and the
verdict is the one an independent evaluation gives.

The right answers are those of every built-in network (both conventions) and parameter: the derived
compact form written as text by the checker's own ``to_text(from_sympy(...))``, and the answer as a
student writes it (:data:`STUDENT`, with test_check.RIGHT). Each drawn case mutates one of them: a
scalar prefix (``1/N``, ``2``, ``\\frac{1}{2}``, ``-``), a transpose of the whole or of a part, two
factors swapped, a factor or a term of a sum dropped, a sign flipped, a symbol replaced by another
of the network, or nothing at all.

The truth does not go through derive/check.py: the mutated text is read into SymPy
(``derive.parse``) and evaluated with tests/evaluator.py at random points, named quantities at their
values, named gradients dL/dQ at PyTorch autograd's derivative of the loss with respect to Q, and
compared with autograd's gradient of the parameter. It runs at other dims than the checker's,
themselves distinct odd primes, so a size that hid a factor from the checker would show here.

The hypothesis profile (tests/conftest.py) sets the count: max_examples // 5 mutations, 200 at
``ci`` (about a minute on 2 cores), 20 at ``dev``, 4000 at ``long``.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from sympy import MatrixExpr

import derive
from derive.checker.formula import Node, from_sympy, leaf, node, replace_at, to_text, walk
from derive.checker.grammar import parse
from derive.checker.network import NetworkView
from derive.errors import DeriveError, ParseError
from derive.examples import catalogue, get

from ..hand_truth import HandTruth
from .test_check import RIGHT

# The derivative of each activation as a student writes it, for the 3-layer MLPs.
SLOPES = {"relu": "1[{Z} > 0]", "leaky_relu": "leaky_relu'({Z}, 0.1)", "elu": "elu'({Z})",
          "sigmoid": "{H} ⊙ (1 - {H})", "gelu": "gelu'({Z})", "silu": "silu'({Z})", "tanh": "(1 - {H}^2)"}


def _mlp_rows(network: str, slope1: str, slope2: str, columns: bool) -> list[tuple]:
    if not columns:
        return [(network, "W3", "H2^T (P - Y)/N"), (network, "b3", "1^T (P - Y)/N"),
                (network, "W2", f"1/N H1^T ((P - Y) W3^T ⊙ {slope2})"),
                (network, "b2", f"sum_rows(dL/dS W3^T ⊙ {slope2})"),
                (network, "W1", f"X^T (((P - Y)/N W3^T ⊙ {slope2}) W2^T ⊙ {slope1})"),
                (network, "b1", f"\\mathbf{{1}}^\\top (\\frac{{\\partial L}}{{\\partial H_1}} \\odot {slope1})")]
    return [(network, "W3", "(P - Y) H2^T / N"), (network, "b3", "sum_cols(P - Y)/N"),
            (network, "W2", f"(W3^T dL/dS ⊙ {slope2}) H1^T"),
            (network, "b2", f"(W3^T (P - Y)/N ⊙ {slope2}) 1"),
            (network, "W1", f"(W2^T (W3^T dL/dS ⊙ {slope2}) ⊙ {slope1}) X^T"),
            (network, "b1", f"sum_cols(dL/dH1 ⊙ {slope1})")]


STUDENT = [
    ("seed_002_neuron", "w1", "sigmoid'(s) x1"),
    ("seed_002_neuron", "x1", "w1 f ⊙ (1 - f)"),
    *(row for name, slope in SLOPES.items() for columns in (False, True)
      for row in _mlp_rows(f"mlp3_{name}" + ("_columns" if columns else ""),
                           slope.format(Z="Z1", H="H1"), slope.format(Z="Z2", H="H2"), columns)),
    ("residual_block", "W3", "H2^T (P - Y)/N"), ("residual_block", "b3", "1^T dL/dS"),
    ("residual_block", "W2", "H1^T (dL/dH2 ⊙ 1[Z2 > 0])"), ("residual_block", "b2", "1^T (dL/dS W3^T ⊙ relu'(Z2))"),
    ("residual_block", "b1", "1^T ((dL/dH2 + (dL/dH2 ⊙ relu'(Z2)) W2^T) ⊙ relu'(Z1))"),
    ("residual_block_columns", "W3", "dL/dS H2^T"), ("residual_block_columns", "b3", "(P - Y)/N 1"),
    ("residual_block_columns", "W2", "(dL/dH2 ⊙ 1[Z2 > 0]) H1^T"),
    ("residual_block_columns", "b2", "sum_cols(W3^T dL/dS ⊙ relu'(Z2))"),
    ("residual_block_columns", "W1", "((dL/dH2 + W2^T dL/dZ2) ⊙ relu'(Z1)) X^T"),
    ("residual_block_columns", "b1", "((dL/dH2 + W2^T dL/dZ2) ⊙ 1[Z1 > 0]) 1"),
]


def _networks() -> list[str]:
    return [name + suffix for name, example in catalogue().items()
            for suffix in [""] + [f"_{c}" for c in example.variants]]


@functools.cache
def example_of(network: str):
    if network.endswith("_columns"):
        return get(network.removesuffix("_columns"), "columns")
    return get(network)


@functools.cache
def network(name: str, param: str) -> NetworkView:
    example = example_of(name)
    return NetworkView(example.loss, next(p for p in example.wrt if p.name == param), example.names, None)


def _compact_rows() -> list[tuple]:
    rows = []
    for name in _networks():
        for p in example_of(name).wrt:
            net = network(name, p.name)
            rows.append((name, p.name, to_text(from_sympy(net.g.compact(p), net.scope))))
    return rows


ROWS = [("compact", *row) for row in _compact_rows()] + [("student", *row) for row in RIGHT + STUDENT]


# --- the independent truth ---------------------------------------------------------------------------

@functools.cache
def truth(name: str, param: str) -> HandTruth:
    example = example_of(name)
    return HandTruth(example.loss, next(p for p in example.wrt if p.name == param), example.names)


def independent_verdict(name: str, param: str, text: str) -> str:
    return truth(name, param).verdict(text)


# --- mutations -------------------------------------------------------------------------------------

PREFIXES = ["2 ", "-", "1/2 ", "\\frac{1}{2} ", "-2 ", "1/{d} ", "2/{d} ", "{d} ", "\\frac{{1}}{{{d}}} ", "1/(2 {d}) "]


def _sites(tree: Node, kinds) -> list[tuple]:
    return [(path, n) for path, n in walk(tree) if n.kind in kinds]


def _matrix_symbols(net: NetworkView) -> list:
    symbols = [s for s in net.scope.symbols.values() if isinstance(s, MatrixExpr)]
    return sorted(symbols, key=str) + sorted(net.scope.gradients.values(), key=str)


@st.composite
def mutations(draw, row: tuple) -> tuple[str, str]:
    """(kind, text) of one mutation of a right answer's text."""
    _, name, param, text = row
    net = network(name, param)
    tree = parse(text, net.scope)
    products = _sites(tree, ("prod", "had"))
    sums = _sites(tree, ("sum",))
    slips = ["prefix", "transpose whole", "transpose part", "symbol"]
    slips += ["swap", "drop factor"] * bool(products) + ["drop term", "sign"] * bool(sums)
    kinds = ["none", *slips, *slips]   # the unchanged answer half as often as each slip
    kind = draw(st.sampled_from(kinds), label="kind")
    if kind == "none":
        return kind, text
    if kind == "prefix":
        prefix = draw(st.sampled_from(PREFIXES))
        if "{d}" in prefix:
            dims = sorted(str(d) for d in net.dims)
            if not dims:
                return kind, f"2 ({text})"
            prefix = prefix.format(d=draw(st.sampled_from(dims)))
        # without parentheses the prefix scales the first factor or term only, as students write it
        return kind, prefix + (f"({text})" if draw(st.booleans()) else text)
    if kind == "transpose whole":
        return kind, f"({text})^T"
    if kind == "transpose part":
        path, part = draw(st.sampled_from(list(walk(tree))))
        changed = part.args[0] if part.kind == "T" else node("T", part)
        return kind, to_text(replace_at(tree, path, changed))
    if kind == "symbol":
        path, part = draw(st.sampled_from(_sites(tree, ("leaf",))))
        other = draw(st.sampled_from(_matrix_symbols(net)))
        return kind, to_text(replace_at(tree, path, leaf(other)))
    if kind in ("swap", "drop factor"):
        path, part = draw(st.sampled_from(products))
        k = draw(st.integers(0, len(part.args) - (2 if kind == "swap" else 1)))
        args = list(part.args)
        if kind == "swap":
            args[k], args[k + 1] = args[k + 1], args[k]
        else:
            del args[k]
        changed = args[0] if len(args) == 1 else node(part.kind, *args)
        return kind, to_text(replace_at(tree, path, changed))
    path, part = draw(st.sampled_from(sums))
    k = draw(st.integers(0, len(part.args) - 1))
    args, signs = list(part.args), list(part.value)
    if kind == "drop term":
        del args[k], signs[k]
    else:
        signs[k] = -signs[k]
    changed = args[0] if len(args) == 1 and signs[0] > 0 else node("sum", *args, value=tuple(signs))
    return kind, to_text(replace_at(tree, path, changed))


# --- the tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}:{r[1]}:{r[2]}:{r[3]}" for r in ROWS])
def test_every_right_answer_is_right_by_the_independent_evaluation(row):
    pytest.importorskip("torch", reason="autograd gives the named gradients' values")
    """The table's own check: the unmutated answers (both sources) equal autograd's gradient."""
    _, name, param, text = row
    assert independent_verdict(name, param, text) == "right"


@settings(max_examples=max(10, settings().max_examples // 5))
@given(data=st.data())
def test_a_mutated_right_answer_gets_the_verdict_of_the_independent_evaluation(data):
    pytest.importorskip("torch", reason="autograd gives the named gradients' values")
    row = data.draw(st.sampled_from(ROWS), label="right answer")
    kind, text = data.draw(mutations(row), label="mutation")
    _, name, param, _ = row
    event(f"mutation: {kind}")
    example = example_of(name)
    try:
        result = derive.check(text, example.loss, param, names=example.names)
    except ParseError:
        event("verdict: ParseError")
        with pytest.raises(ParseError):   # not in the grammar for the truth either
            independent_verdict(name, param, text)
        return
    except DeriveError as error:
        event(f"verdict: {type(error).__name__}")
        return
    expected = independent_verdict(name, param, text)
    note(result.report())
    event(f"verdict: {'right' if result else 'wrong'}")
    assert isinstance(result, derive.CheckResult)
    assert bool(result) == (expected == "right"), f"{name} dL/d{param}: {text!r} is {expected}"
    if result.diagnosis is not None and result.diagnosis.kind != "other-parameter":
        event(f"diagnosis: {result.diagnosis.kind}")
        corrected = result.diagnosis.corrected    # the correction a report offers is right too
        assert independent_verdict(name, param, corrected) == "right", corrected
