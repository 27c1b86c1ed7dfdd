"""The derivation sheet: what it shows is the derivation's, its numbers match finite differences,
user names cannot break it, and every built-in example's sheet compiles with pdflatex."""

import math
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol, lambdify
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core.activations import relu, sigmoid
from derive.core.explicit import explicit
from derive.core.losses import mse
from derive.examples import catalogue, get
from derive.render.latex import DeriveLatexPrinter, latex
from derive.render.sheet import (
    GENERATED_MARK,
    figure,
    gradient_latex,
    sheet_summary_latex,
    templates_dir,
    to_latex,
    with_shape,
)

EXAMPLES = list(catalogue())


@pytest.fixture(scope="module")
def sheets():
    """Every built-in example's derivation and sheet, rendered once."""
    out = {}
    for name, example in catalogue().items():
        g = example.derive()
        out[name] = (g, to_latex(g, title=example.title, dims=example.dims, values=example.values,
                                 source=example.source))
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_sheet_starts_with_the_generated_header(sheets, name):
    first_line = sheets[name][1].split("\n", 1)[0]
    assert first_line.startswith("%") and GENERATED_MARK in first_line


@pytest.mark.parametrize("name", EXAMPLES)
def test_sheet_boxes_the_derivations_gradients(sheets, name):
    g, tex = sheets[name]
    for p in g.params:
        assert rf"\boxed{{{with_shape(gradient_latex(p), p.shape)} = {latex(g.compact(p))}}}" in tex


@pytest.mark.parametrize("name", EXAMPLES)
def test_sheet_shows_every_step_and_forward_quantity(sheets, name):
    g, tex = sheets[name]
    # a sum's pass-through to one of its terms is folded into the step it feeds (tests/render/test_sheet_layout.py)
    passes = [s for s in g.steps if s.rule in ("sum", "scalar sum") and s.local is None and s.result == s.upstream]
    assert tex.count(r"\subsection*{Step ") == len(g.steps) - len(passes)
    for step in g.steps:
        assert latex(step.result) in tex
    for f in g.forward:
        assert latex(f.definition) in tex
    diagonal = sum(step.diagonal for step in g.steps)
    assert tex.count("Jacobian is diagonal") == diagonal


# The derivation's map from names (Z, dL/dZ) to the network's symbols, which gives the figure its
# numbers: the compact forms closed with it must equal the elementwise truth (the loss expanded into
# scalars at small dims and differentiated entry by entry).
EXPANDED = ["seed_000_bce", "seed_001_linreg_batch", "seed_001_two_linear", "seed_002_two_paths",
            "seed_001_sigmoid_between"]


@pytest.mark.parametrize("name", EXPANDED)
def test_closed_names_give_the_elementwise_truth(name):
    example = get(name)
    g = example.derive()
    dims = derive.core.dims.normalize_dims(example.dims, g.loss)
    mapping = g.closed_names
    rng = np.random.default_rng(1)
    for p in g.params:
        written = explicit(g.compact(p).xreplace(mapping).subs(dims))
        truth = g.elementwise(p, dims)
        unknowns = sorted(written.atoms(MatrixElement) | truth.atoms(MatrixElement), key=str)
        point = rng.uniform(0.1, 0.9, len(unknowns))
        plain = [Symbol(f"v{i}") for i in range(len(unknowns))]
        swap = dict(zip(unknowns, plain))
        w = np.array(lambdify(plain, written.xreplace(swap), "numpy")(*point), dtype=float)
        t = np.array(lambdify(plain, truth.xreplace(swap), "numpy")(*point), dtype=float)
        np.testing.assert_allclose(w, t, rtol=1e-9, atol=1e-12)


def test_written_out_part_follows_dims():
    g = get("seed_001_linreg_batch").derive()
    tex2, tex3 = (to_latex(g, dims={"N": n}) for n in (2, 3))
    assert "Written out at $N = 2$" in tex2 and "Written out at $N = 3$" in tex3
    # entries are written in the data and the predictions (note 001), not in upstream gradients
    assert r"{\hat{y}}_{31}" in tex3.split("Written out", 1)[1]
    assert r"{\hat{y}}_{31}" not in tex2
    assert "Written out" not in to_latex(g)


# --- the worked example of note 002: numbers on the figure ----------------------------------------

def neuron(w0, x0, w1, x1, w2):
    return 1 / (1 + math.exp(-(w0 * x0 + w1 * x1 + w2)))


def finite_difference(f, point, name, h=1e-6):
    up, down = dict(point), dict(point)
    up[name] += h
    down[name] -= h
    return (f(**up) - f(**down)) / (2 * h)


def edges_by_source(fig):
    labels = {n["ref"]: n["label"] for n in fig.nodes}
    return {(labels[e["source"]], labels[e["target"]]): e for e in fig.edges}


def test_neuron_figure_numbers_equal_finite_differences():
    example = get("seed_002_neuron")
    g = example.derive()
    point = {p.name: float(example.values[p]) for p in g.params}
    fig = figure(g, example.values, {})
    edges = edges_by_source(fig)
    for p in g.params:
        edge = edges[(latex(p), "s")]
        assert float(edge["value"]) == pytest.approx(point[p.name], abs=0.005)
        assert float(edge["gradient"]) == pytest.approx(finite_difference(neuron, point, p.name), abs=0.005)
    assert float(fig.output["value"]) == pytest.approx(neuron(**point), abs=0.005)


def test_neuron_sheet_prints_the_notes_numbers():
    example = get("seed_002_neuron")
    tex = to_latex(example.derive(), values=example.values)
    point = {p.name: float(example.values[p]) for p in example.wrt}
    for p in example.wrt:
        expected = f"{finite_difference(neuron, point, p.name):.2f}"
        assert f"{gradient_latex(p)} &= {expected}" in tex
    assert f"{{${neuron(**point):.2f}$}}" in tex


def test_two_paths_add_up_to_the_finite_difference():
    example = get("seed_002_two_paths")
    g = example.derive()

    def f(x, y):
        return 1 / (1 + math.exp(-x * y)) + x

    point = {"x": 3.0, "y": -4.0}
    edges = edges_by_source(figure(g, example.values, {}))
    from_x = [float(e["gradient"]) for (source, _), e in edges.items() if source == "x"]
    assert len(from_x) == 2
    assert sum(from_x) == pytest.approx(finite_difference(f, point, "x"), abs=0.01)
    tex = to_latex(g, values=example.values)
    assert "Several paths add up" in tex


def test_figure_has_no_numbers_without_values(sheets):
    fig = figure(get("mlp3_relu").derive(), None, {})
    assert all(e["value"] is None and e["gradient"] is None for e in fig.edges)


# --- names that must not break the sheet ----------------------------------------------------------

HOSTILE_NAMES = ["x_1#%", "\\input{/etc/passwd}", "a&b~c^d$", "}{\\end{document}"]


def hostile_derivation(name):
    n = Symbol("N", integer=True, positive=True)
    x = MatrixSymbol(name, n, 2)
    w = MatrixSymbol("w" + name, 2, 1)
    b = MatrixSymbol("b", 1, 1)
    y = MatrixSymbol("y", n, 1)
    z = x * w + OneMatrix(n, 1) * b
    return derive.gradients(mse(sigmoid(relu(z)), y), [w, b], names={"z%" + name: z})


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_escaped(name):
    tex = to_latex(hostile_derivation(name), title=name, dims={"N": 2})
    body = tex.split(r"\begin{document}", 1)[1]
    assert r"\input{" not in body and r"\end{document}" in body
    assert body.count(r"\end{document}") == 1
    assert "passwd" not in tex or r"\textbackslash{}input\{/etc/passwd\}" in tex


def test_summary_lists_each_gradient():
    g = get("seed_000_bce").derive()
    summary = g._repr_latex_()
    assert summary == sheet_summary_latex(g)
    assert summary.startswith("$$") and summary.endswith("$$")
    for p in g.params:
        assert latex(g.compact(p)) in summary


def test_templates_are_found():
    assert (templates_dir() / "sheet.tex.j2").is_file()


# --- compiling with pdflatex ----------------------------------------------------------------------

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                               reason="pdflatex or pdftotext is not installed")


def compile_tex(tex: str, folder) -> tuple[str, str]:
    """Compile in ``folder``; return pdflatex's log and pdftotext's text of the PDF."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sheet.tex").write_text(tex)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                          "sheet.tex"], cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    log = (folder / "sheet.log").read_text(errors="replace")
    lines = log.splitlines()
    assert run.returncode == 0, "pdflatex failed:\n" + "\n".join(
        " | ".join(lines[k:k + 3]) for k, line in enumerate(lines) if line.startswith("!"))
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", "sheet.pdf", "-"], cwd=folder, capture_output=True,
                          text=True, check=True).stdout
    return log, text


@needs_tex
def test_every_sheet_compiles(sheets, tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(EXAMPLES, pool.map(lambda n: compile_tex(sheets[n][1], tmp_path / n), EXAMPLES)))
    for name, (log, text) in results.items():
        g = sheets[name][0]
        assert not re.search(r"^! ", log, re.MULTILINE), name
        wide = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log) if float(w) > 1.0]
        assert not wide, (name, wide)
        compact = re.sub(r"\s+", "", text)
        assert "∂L" in compact, name
        for p in g.params:
            assert f"∂{p.name}" in compact, (name, p.name)


@needs_tex
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_compile(name, tmp_path):
    log, text = compile_tex(to_latex(hostile_derivation(name), title=name, dims={"N": 2}), tmp_path)
    # the name is typeset as text, character for character, never run as TeX
    assert name in text
    assert "(/etc/passwd" not in log


# Titles and names as people type them, with symbols pdflatex's text fonts lack: the text read back
# from the PDF has each of ``shown``, and a character no font has is shown as its code point.
UNICODE_TITLES = [
    ("σ(X W) ⊙ M, λ ≤ 1", ["σ", "⊙", "λ", "≤"]),
    ("ΣΔ of Wᵀ x²", ["Σ", "∆", "W", "x"]),
    ("café, łódź and 中文 🙂", ["café", "łódź", "[U+4E2D]", "[U+1F642]"]),
]


@needs_tex
@pytest.mark.parametrize(("title", "shown"), UNICODE_TITLES, ids=[row[0] for row in UNICODE_TITLES])
def test_unicode_titles_and_names_compile(title, shown, tmp_path):
    log, text = compile_tex(to_latex(hostile_derivation(title), title=title, dims={"N": 2}), tmp_path)
    assert not re.search(r"^! ", log, re.MULTILINE)
    for piece in shown:
        assert piece in text, (piece, text[:400])


# Drawn by the property tests: its closed forms in the network's symbols repeat the shared layers so
# often that printing them (to find they do not fit on a line) took over 5 minutes; the sheet counts
# their leaves first and prints only what can fit.
DEEP_NETWORK = """
from sympy import (BlockMatrix, Determinant, HadamardPower, Identity, Inverse, Matrix, MatrixSymbol, OneMatrix,
                   Rational, Symbol, Trace, ZeroMatrix, cos, exp, log, sin)
from derive import bce, cross_entropy, elu, gelu, leaky_relu, mse, relu, sigmoid, silu, softplus, tanh
N = Symbol("N", integer=True, positive=True)
D = Symbol("D", integer=True, positive=True)
X = MatrixSymbol("X", N, D)
W1 = MatrixSymbol("W1", D, 4)
b1 = MatrixSymbol("b1", 1, 4)
Z1 = X*W1 + OneMatrix(N, 1)*b1
A1 = Z1 - OneMatrix(N, N)*Z1/N
H1 = sigmoid(A1)
g1 = MatrixSymbol("g1", 1, 1)
M1 = Matrix([[g1[0, 0], 0, 0, 0], [0, g1[0, 0], 0, 0], [0, 0, g1[0, 0], 0], [0, 0, 0, g1[0, 0]]])
O1 = H1*M1
C2 = MatrixSymbol("C2", 4, 1)
F2 = BlockMatrix([[O1, relu(O1*C2)]])
W2 = MatrixSymbol("W2", 5, 2)
b2 = MatrixSymbol("b2", 1, 2)
u2 = MatrixSymbol("u2", 1, 2)
t2 = MatrixSymbol("t2", 1, 1)
Z2 = t2[0, 0]*(F2*W2 + OneMatrix(N, 1)*b2 + OneMatrix(N, 1)*u2)
A2 = Z2 - OneMatrix(N, N)*Z2/N
H2 = A2
d2a, d2b = MatrixSymbol("d2a", 1, 1), MatrixSymbol("d2b", 1, 1)
M2 = Matrix([[d2a[0, 0], 0], [0, d2b[0, 0]]])
O2 = H2*M2
C3 = MatrixSymbol("C3", 2, 1)
F3 = BlockMatrix([[O2, relu(O2*C3)]])
W3 = MatrixSymbol("W3", 3, 4)
b3 = MatrixSymbol("b3", 1, 4)
Z3 = F3*W3 + OneMatrix(N, 1)*b3
H3 = tanh(Z3)
G3 = H3 + H3*OneMatrix(4, 1)*OneMatrix(1, 4)
C4 = MatrixSymbol("C4", 4, 1)
F4 = BlockMatrix([[G3, relu(G3*C4)]])
W4 = W2
b4 = MatrixSymbol("b4", 1, 2)
u4 = MatrixSymbol("u4", 1, 2)
t4 = MatrixSymbol("t4", 1, 1)
Z4 = (F4*W4 + OneMatrix(N, 1)*b4 + OneMatrix(N, 1)*u4)*(1/t4[0, 0])
H4 = sigmoid(Z4)
Y = MatrixSymbol("Y", N, 2)
loss = bce(H4, Y, reduction="sum")
wrt = [X, W1, b1, g1, C2, W2, b2, u2, t2, d2a, d2b, C3, W3, b3, C4, b4, u4, t4]
names = {"Z1": Z1, "Z2": Z2, "Z3": Z3, "Z4": Z4}
dims = {N: 1, D: 2}
"""


def test_a_deep_networks_sheet_prints_no_closed_form_too_long_for_a_line(monkeypatch):
    namespace: dict = {}
    exec(DEEP_NETWORK, namespace)  # noqa: S102 - our own declaration
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])
    printed = []
    real_print = DeriveLatexPrinter._print

    def counted(self, expr, **kwargs):
        printed.append(expr)
        return real_print(self, expr, **kwargs)

    monkeypatch.setattr(DeriveLatexPrinter, "_print", counted)
    sheet = to_latex(g, dims={"N": 1, "D": 2})
    assert len(printed) < 50_000   # 1.6 million before
    for p in g.params:   # every gradient is still boxed in its compact form
        assert rf"\boxed{{{with_shape(gradient_latex(p), p.shape)} = {latex(g.compact(p))}}}" in sheet
