"""The sheet's second-order section (``to_latex(g, hvp=True)``, ``derive sheet NET --hvp``): the tangent
pass step by step with shapes, a boxed HVP per parameter and a boxed Hessian per vector parameter, each
the derivation's own (checked by the core against second differences of the loss), compiled with pdflatex
and read back with pdftotext where TeX is installed."""

from __future__ import annotations

import re

import pytest
from sympy import MatrixSymbol, Symbol

import derive
from derive.core.activations import sigmoid
from derive.core.losses import bce
from derive.examples import catalogue
from derive.render.hvp import hvp_of
from derive.render.latex import latex
from derive.render.shared import named as shared_parts
from derive.render.sheet_hvp import _without_transposed_leaves, second_order_view

from .test_sheet import compile_tex, needs_tex

N, D = Symbol("N", integer=True, positive=True), Symbol("D", integer=True, positive=True)
X, y, w = MatrixSymbol("X", N, D), MatrixSymbol("y", N, 1), MatrixSymbol("w", D, 1)
LOGISTIC = derive.gradients(bce(sigmoid(X * w), y), [w])


def derivations():
    return {"logistic regression": LOGISTIC, "seed_000_bce": catalogue()["seed_000_bce"].derive(),
            "mlp3_tanh": catalogue()["mlp3_tanh"].derive(),
            # Hessians too long for a line: broken, their shared parts named (S1, S2, ...), never shrunk
            "seed_003_mlp_column": catalogue()["seed_003_mlp_column"].derive(),
            "seed_004_sigmoid_231": catalogue()["seed_004_sigmoid_231"].derive()}


@pytest.fixture(scope="module")
def sheets():
    return {name: (g, derive.to_latex(g, hvp=True)) for name, g in derivations().items()}


def test_the_section_is_only_there_when_asked_for():
    assert "Second order" not in derive.to_latex(LOGISTIC)
    assert "Second order" in derive.to_latex(LOGISTIC, hvp=True)


def test_every_tangent_step_and_every_product_is_shown(sheets):
    for name, (g, tex) in sheets.items():
        view = second_order_view(g, lambda rows: [{"lhs": r[0], "whole": latex(r[2]), "lines": [latex(r[2])]}
                                                  for r in rows], lambda s, shape: s)
        hvp = hvp_of(g)   # the one the sheet shows (g.hvps also holds those the Hessians were read off)
        assert len(view["tangents"]) == len(hvp.steps) > 0, name
        for p in g.params:
            assert rf"\boxed{{\underset{{{latex(p.shape[0])}\times {latex(p.shape[1])}}}{{(H V)_{{{latex(p)}}}}}" in tex, \
                (name, p.name)
            assert latex(hvp.compact[p]) in tex, (name, p.name)
        vectors = [p for p in g.params if 1 in p.shape]
        assert len(view["hessians"]) == len(vectors), name


def test_the_logistic_regression_hessian_is_the_classic_one(sheets):
    g, tex = sheets["logistic regression"]
    hessian = g.hessian(w)
    assert latex(hessian) in tex
    # X^T diag(p (1 - p)) X / N, without the diagonal matrix: X^T ((p ⊙ (1 - p)) 1^T ⊙ X) / N
    assert r"\boxed{\underset{D\times D}{\frac{\partial^2 L}{\partial w\, \partial w^{\top}}}" in tex
    assert "Diag" not in str(hessian) and hessian.shape == (D, D)


@needs_tex
def test_second_order_sheets_compile_and_fit_the_page(sheets, tmp_path):
    for name, (g, tex) in sheets.items():
        log, text = compile_tex(tex, tmp_path / name.replace(" ", "_"))
        wide = [float(v) for v in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log) if float(v) > 1.0]
        assert not wide, (name, wide)
        compact = re.sub(r"\s+", "", text)
        assert "Secondorder:Hessian-vectorproducts" in compact and "Tangentpass" in compact, name
        for p in g.params:
            assert f"(HV){p.name}" in compact, (name, p.name)
        if any(1 in p.shape for p in g.params):
            assert "Hessiansofthevectorparameters" in compact, name
        if name != "mlp3_tanh":   # its biases' Hessians are not read off (a sentence says so)
            assert "∂2L" in compact, name


@pytest.mark.parametrize("name", ["seed_003_mlp_column", "seed_004_sigmoid_231"])
def test_a_long_hessian_is_shown_in_named_parts_that_give_it_back(name, sheets):
    g, tex = sheets[name]
    section = tex.split("Hessians of the vector parameters")[1].split(r"\section*")[0]
    assert r"\fitwidth{\frac{\partial^2 L}" not in section   # no Hessian squeezed onto one line
    forward = {f.expression: f.symbol for f in g.forward}
    for p in (p for p in g.params if 1 in p.shape):
        hessian = g.hessian(p)
        definitions, short = _without_transposed_leaves(*shared_parts(hessian.xreplace(forward), prefix="S"))
        assert not any(value.is_Transpose and value.arg.is_symbol for _, value in definitions)
        for symbol, value in reversed(definitions):   # each definition uses only earlier ones
            short = short.xreplace({symbol: value})
        assert short.xreplace({f.symbol: f.expression for f in g.forward}) == hessian, p
    assert "where" in section and r"S_{1}" in section
