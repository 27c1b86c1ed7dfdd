"""Sheets an instructor can hand out: nothing runs off the page at any dims (pdflatex's own overfull
boxes are the judge), every symbol is defined, steps are named by what they do, pass-through sums are
folded, the backward pass is summarised, and written-out entries are in the data and the parameters.

The compile tests need pdflatex; ``DERIVE_SHEET_SWEEP=1`` widens the drawn-network sweep (hypothesis)
beyond the fixed networks below.
"""

import functools
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from sympy import Identity, MatrixSymbol, Symbol, Trace, lambdify
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core.dims import normalize_dims
from derive.core.explicit import explicit
from derive.examples import catalogue, get
from derive.render.fit import LINE_EM, term_lines, tex_width
from derive.render.latex import latex
from derive.render.sheet import sheet_summary_latex, to_latex
from derive.render.written import in_data, written_out
from tests.networks import Extra, Layer, Network

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")

# pdflatex may set a box this much wider than the line before it counts as running off the page.
OVERFULL_TOLERANCE_PT = 1.0


def compile_sheet(tex: str, folder) -> str:
    """Compile ``tex`` in ``folder`` (the log stays there); fail with pdflatex's own error lines, or on
    any overfull box wider than the tolerance. Returns the log."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sheet.tex").write_text(tex)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "sheet.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=180, check=False)
    log_path = folder / "sheet.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else run.stdout
    if run.returncode != 0:
        lines = log.splitlines()
        errors = [" | ".join(lines[k:k + 3]) for k, line in enumerate(lines) if line.startswith("!")]
        pytest.fail(f"pdflatex failed (log kept in {log_path}):\n" + "\n".join(errors or lines[-15:]))
    overfull = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    wide = [w for w in overfull if w > OVERFULL_TOLERANCE_PT]
    assert not wide, f"material runs off the page by {wide} pt (log kept in {log_path})"
    return log


# --- every built-in sheet fits the page -------------------------------------------------------------

@needs_tex
@pytest.mark.parametrize("name", list(catalogue()))
def test_built_in_sheet_fits_the_page(name, tmp_path):
    example = catalogue()[name]
    g = example.derive()
    log = compile_sheet(to_latex(g, title=example.title, dims=example.dims or None, values=example.values,
                                 source=example.source), tmp_path)
    # the breaking alone fits them: the guard that shrinks an unbreakable display never fires
    assert "derive: a display shrunk" not in log


# --- drawn networks at N = 2, 5, 60, 500 ------------------------------------------------------------

def network(layers, loss="mse", rows=True, extras=(), d=3, named=True):
    return Network(rows=rows, layers=tuple(layers), loss=loss, reduction="mean", extras=tuple(extras),
                   input_in_wrt=False, named=named, n=2, d=d, seed=0)


DRAWN = {
    # the 3-4-1 tanh network, 197pt too wide at N = 2 before
    "tanh_3_4_1": network([Layer(4, "tanh"), Layer(1, None)], d=3),
    "relu_columns_bce": network([Layer(3, "relu"), Layer(2, "gelu", residual=False), Layer(1, "sigmoid")],
                                loss="bce", rows=False, d=2),
    "tied_decay_softmax": network([Layer(3, "silu"), Layer(3, "elu", slope="Rational(1, 2)", residual=True),
                                   Layer(4, None)], loss="cross_entropy",
                                  extras=[Extra("decay", "W1", "Rational(1, 10)"), Extra("logdet", "W2", "1")], d=2),
}


@functools.cache
def drawn_derivation(net: Network):
    namespace = net.build()
    return derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])


def drawn_sheet(net: Network, n: int) -> str:
    return to_latex(drawn_derivation(net), title="A drawn network", dims={"N": n, "D": net.d})


@needs_tex
@pytest.mark.parametrize("n", [2, 5, 60, 500])
@pytest.mark.parametrize("name", list(DRAWN))
def test_drawn_network_sheet_fits_the_page(name, n, tmp_path):
    tex = drawn_sheet(DRAWN[name], n)
    assert len(tex) < 120_000   # at N = 500 the written-out part is one line, not 610 KB
    compile_sheet(tex, tmp_path)


@needs_tex
@pytest.mark.skipif(not os.environ.get("DERIVE_SHEET_SWEEP"), reason="the wide sweep: set DERIVE_SHEET_SWEEP=1")
def test_drawn_networks_fit_the_page_sweep(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.networks import networks

    @settings(max_examples=int(os.environ.get("DERIVE_SHEET_SWEEP_EXAMPLES", "20")), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(networks(), st.sampled_from([2, 5, 60, 500]))
    def check(net, n):
        compile_sheet(drawn_sheet(net, n), tmp_path_factory.mktemp("drawn"))

    check()


# --- what is left out, and why ----------------------------------------------------------------------

def test_large_dims_leave_the_written_out_part_out_with_a_reason():
    g = get("seed_000_bce").derive()
    rows = written_out(g, normalize_dims({"N": 500}, g.root))
    assert [r["kind"] for r in rows] == ["omitted"] * len(g.params)
    assert all("left out" in r["sentence"] and "500" in r["sentence"] for r in rows)
    written = to_latex(g, dims={"N": 500}).split(r"\section*{Written out", 1)[1]
    assert written.count("left out") == 1 and r"\begin{bmatrix}" not in written


# --- the width estimate and the line breaking -------------------------------------------------------

FORMULAS = [
    r"{\left(H_{2}\right)}_{52} \left(\frac{\partial L}{\partial Z_{3}}\right)_{52}",
    r"\left(1 - {h}_{11}\right) \left(\frac{{z}_{11}}{2} - \frac{{t}_{11}}{2}\right) {h}_{11} {\left(W_{2}\right)}_{11}",
    r"\frac{1}{N} \operatorname{relu}\left(X w_{1}\right)^{\top} \left(\sigma\left(\operatorname{relu}\left(X w_{1}\right) w_{2} + \mathbf{1} b\right) - y\right)",
    r"\left(\frac{\partial L}{\partial w_{1}}\right)_{ij} = \sum_{k=1}^{N} \left(\frac{\partial L}{\partial a}\right)_{kj} {X}_{ki}",
    r"A^{\top} X \frac{\partial L}{\partial Z_{1}} + A X \frac{\partial L}{\partial Z_{1}}^{\top} \odot \sigma'\left(Z\right)",
    r"\mathbb{1}\left[{a}_{11} > 0\right] \left(\frac{{p}_{11}}{2} - \frac{{y}_{11}}{2}\right) {X}_{11}",
]


@needs_tex
def test_width_estimate_is_never_narrower_than_tex_by_much(tmp_path):
    """The estimate against TeX's own measure of each formula (\\wd of a display-style box)."""
    body = "\n".join(rf"\setbox0=\hbox{{$\displaystyle {f}$}}\typeout{{WIDTH{k} \the\wd0}}" for k, f in enumerate(FORMULAS))
    tex = ("\\documentclass[10pt]{article}\\usepackage[T1]{fontenc}\\usepackage{lmodern}\\usepackage{amsmath,amssymb}"
           f"\\begin{{document}}\n{body}\n\\end{{document}}\n")
    log = compile_sheet(tex, tmp_path)
    measured = {int(k): float(pt) / 10.0 for k, pt in re.findall(r"WIDTH(\d+) ([\d.]+)pt", log)}
    assert len(measured) == len(FORMULAS)
    for k, formula in enumerate(FORMULAS):
        assert tex_width(formula) >= 0.97 * measured[k], (formula, tex_width(formula), measured[k])


def test_a_long_sum_breaks_into_lines_that_fit_and_keep_every_term():
    x = MatrixSymbol("x", 40, 1)
    w = MatrixSymbol("w_1", 40, 1)
    total = sum((x[k, 0] * w[k, 0] for k in range(40)), start=0)
    lines = term_lines(total, latex, room=30.0)
    assert lines is not None and len(lines) > 1
    assert all(tex_width(line) <= 30.0 for line in lines)
    joined = " ".join(lines)
    assert joined.count(r"\left(w_{1}\right)") == 40 and joined.count("{x}_{") == 40


def test_a_term_too_wide_alone_is_not_broken():
    x = MatrixSymbol("x", 1, 1)
    assert term_lines(x[0, 0], latex, room=0.5) is None


# --- written-out entries in the data and parameters, checked against the elementwise truth -----------

@pytest.mark.parametrize("name", ["seed_001_linreg_batch", "seed_000_bce", "seed_004_sigmoid_231"])
def test_entries_in_the_data_equal_the_elementwise_truth(name):
    example = get(name)
    g = example.derive()
    dims = normalize_dims(example.dims, g.root)
    rng = np.random.default_rng(3)
    for p in g.params:
        data = in_data(g, g.compact(p))
        assert not data.atoms(derive.core.symbols.LossGradient)
        written = explicit(data.xreplace(g.closed_names).subs(dims))
        truth = g.elementwise(p, dims)
        unknowns = sorted(written.atoms(MatrixElement) | truth.atoms(MatrixElement), key=str)
        plain = [Symbol(f"v{i}") for i in range(len(unknowns))]
        point = rng.uniform(0.1, 0.9, len(unknowns))
        swap = dict(zip(unknowns, plain))
        np.testing.assert_allclose(np.array(lambdify(plain, written.xreplace(swap))(*point), dtype=float),
                                   np.array(lambdify(plain, truth.xreplace(swap))(*point), dtype=float), rtol=1e-9)


def test_written_out_section_of_note_001_is_in_the_data():
    g = get("seed_001_linreg_batch").derive()
    tex = to_latex(g, dims={"N": 2})
    written = tex.split("Written out at", 1)[1]
    matrices = re.findall(r"\\begin\{bmatrix\}(.*?)\\end\{bmatrix\}", written)
    assert len(matrices) == len(g.params)
    assert not any(r"\partial L" in m for m in matrices)
    assert r"{\hat{y}}_{21} - {y}_{21}" in written and "{X}_{21}" in written


# --- symbols defined, steps named, pass-throughs folded, a summary --------------------------------

@pytest.fixture(scope="module")
def seed_000():
    example = get("seed_000_bce")
    g = example.derive()
    return g, to_latex(g, title=example.title, dims=example.dims, source=example.source)


def test_every_symbol_of_seed_000_is_defined(seed_000):
    _, tex = seed_000
    assert r"$s = \frac{1}{N}$ is the loss's scale" in tex
    assert r"\sigma'(x) = \sigma(x)\left(1 - \sigma(x)\right)" in tex
    assert r"\operatorname{relu}'(x) = \mathbb{1}[x > 0]" in tex
    assert r"$\mathbf{1}$ is a matrix of ones" in tex
    assert r"\mathbb{1}\left[a > 0\right]" in tex   # relu' in the steps, as note 003 writes it
    assert "Step(" not in tex and r"\operatorname{relu}'" not in tex.split("Forward pass", 1)[1]


def test_gelu_sheet_defines_phi():
    example = get("mlp3_gelu")
    tex = to_latex(example.derive(), title=example.title, dims=example.dims)
    assert r"$\Phi(x)$ is the standard normal distribution function" in tex and r"\phi(x) = e^{" in tex
    # GELU's slope in the steps is written with the phi it defines, not as e^{-x^2/2} / sqrt(2 pi)
    assert r"\phi\left(" in tex and r"\sqrt{\pi}" not in tex


def test_pass_through_sums_are_folded_and_steps_named(seed_000):
    g, tex = seed_000
    shown = [s for s in g.steps if not (s.rule == "sum" and s.result == s.upstream and s.local is None)]
    assert len(shown) == len(g.steps) - 2
    assert tex.count(r"\subsection*{Step ") == len(shown)
    for heading in ("through the binary cross-entropy", "through the sigmoid", "through the ReLU",
                    r"through $h w_{2} + \mathbf{1} b$"):
        assert re.search(r"\\subsection\*\{Step \d+: " + re.escape(heading) + "}", tex), heading
    assert "elementwise function" not in tex
    # the folded sum keeps its meaning: its terms receive the gradient unchanged
    # (once for each step through one of its terms: h and w2 through h w2, b through 1 b)
    assert tex.count("hands its gradient unchanged to each of its terms") == 3


def test_backward_summary_lists_each_quantity_in_order(seed_000):
    g, tex = seed_000
    summary = tex.split("At a glance", 1)[1].split("The sweep starts", 1)[0]
    names = [r"\frac{\partial L}{\partial p}", r"\frac{\partial L}{\partial z}", r"\frac{\partial L}{\partial h}",
             r"\frac{\partial L}{\partial w_{2}}", r"\frac{\partial L}{\partial a}", r"\frac{\partial L}{\partial w_{1}}",
             r"\frac{\partial L}{\partial b}"]
    positions = [summary.index(name + " &=") for name in names]
    assert positions == sorted(positions)
    for p in g.params:
        assert latex(g.compact(p)) in summary


def test_sources_are_the_notes_titles(seed_000):
    _, tex = seed_000
    assert "An Exercise in Backpropagation" in tex and "shared/seeds" not in tex
    assert "beyond the notes" not in to_latex(get("mlp3_relu").derive(), source=get("mlp3_relu").source)


def test_boxed_results_show_the_expanded_form_when_it_fits(seed_000):
    g, tex = seed_000
    gradients_section = tex.split(r"\section*{Gradients}", 1)[1].split(r"\section*{Written out", 1)[0]
    assert gradients_section.count("In the network's own symbols") == sum(g[p] != g.compact(p) for p in g.params)


# --- fragments, notebooks and identities ------------------------------------------------------------

def test_fragment_has_no_preamble(seed_000):
    g, _ = seed_000
    fragment = to_latex(g, standalone=False)
    assert fragment.startswith("%") and derive.render.templates.GENERATED_MARK in fragment.split("\n", 1)[0]
    for absent in (r"\documentclass", r"\begin{document}", r"\end{document}", r"\usepackage"):
        assert absent not in fragment
    assert r"\section*{Backward pass}" in fragment


def test_notebook_display_defines_the_names_it_uses(seed_000):
    g, _ = seed_000
    shown = sheet_summary_latex(g)
    assert r"a &= X w_{1}" in shown and r"\frac{\partial L}{\partial a} &= " in shown
    assert shown.index(r"a &= X w_{1}") < shown.index(r"\frac{\partial L}{\partial w_{1}} &= ")


def test_identities_are_not_printed():
    n = Symbol("n", integer=True, positive=True)
    x, a = MatrixSymbol("X", n, n), MatrixSymbol("A", n, n)
    g = derive.gradients(Trace(x.T * a * x), [x])
    for printed in (latex(g[x]), to_latex(g).split(r"\section*{Gradients}")[1], sheet_summary_latex(g)):
        assert not re.search(r"(?<![A-Za-z\\])I(?![A-Za-z])", printed.replace(r"\left(", "").replace(r"\right)", "")), printed
    assert latex(Identity(n)) == "I"


def test_line_width_leaves_room_on_the_page():
    assert LINE_EM < 48.4   # A4 with 2cm margins at 10pt
