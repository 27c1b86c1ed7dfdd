"""Every spelling of README's "Spellings students write" table, as a row: a right answer written in
that spelling is accepted and a wrong one refused, each verdict equal to the independent truth's
(tests/hand_truth.py: the formula evaluated at random points against PyTorch autograd)."""

import re
from pathlib import Path

import pytest
from sympy import MatrixSymbol, Symbol, Trace

import derive
from derive.checker.grammar import parse
from derive.checker.network import NetworkView
from derive.errors import ParseError
from derive.examples import get

ROOT = Path(__file__).resolve().parents[2]

N = Symbol("N", integer=True, positive=True)
X, w, y = MatrixSymbol("X", N, 3), MatrixSymbol("w", 3, 1), MatrixSymbol("y", N, 1)
RESIDUAL = X * w - y
# a loss of our own for the accents: rbar and ytilde are its names
ACCENTED = (Trace(RESIDUAL.T * RESIDUAL) / N, w, {"ytilde": X * w, "rbar": RESIDUAL})

# (spelling as README lists it, network, parameter, a right answer, a wrong answer), both in that spelling
SPELLINGS = [
    ("$...$", "seed_000_bce", "w2", "$h^T (p - y)/N$", "$h^T (p - y)$"),
    ("$$...$$", "seed_000_bce", "w2", "$$h^T (p - y)/N$$", "$$2 h^T (p - y)/N$$"),
    (r"\(...\)", "seed_000_bce", "w2", r"\(h^T (p - y)/N\)", r"\(h (p - y)^T/N\)"),
    (r"\[...\]", "seed_000_bce", "w2", r"\[h^T (p - y)/N\]", r"\[h^T (y - p)/N\]"),
    (r"\left( \right)", "seed_000_bce", "w2", r"h^T \left( p - y \right)/N", r"h^T \left( p + y \right)/N"),
    (r"\left[ \right]", "seed_000_bce", "w2", r"h^T \left[ p - y \right]/N", r"h^T \left[ p - y \right]"),
    ("[...]", "seed_000_bce", "w2", "h^T [p - y]/N", "h^T [p - y]"),
    (r"\{...\}", "seed_000_bce", "w2", r"h^T \{p - y\}/N", r"h^T \{p - y\}"),
    (r"\left\{ \right\}", "seed_000_bce", "w2", r"h^T \left\{p - y\right\}/N", r"h^T \left\{y\right\}/N"),
    (r"\bigl( \bigr), \Big( \Big)", "seed_000_bce", "w2", r"h^T \bigl(p - y\bigr)/N", r"h^T \Big(p - y\Big)"),
    (r"\tanh", "mlp3_tanh", "W1", r"X^T (dL/dZ2 W2^T ⊙ (1 - \tanh(Z1)^2))", r"X^T (dL/dZ2 W2^T ⊙ (1 - \tanh(Z1)))"),
    (r"\exp", "seed_000_bce", "b", r"1^T (\exp(z) ⊘ (1 + \exp(z)) - y)/N", r"1^T (\exp(z) - y)/N"),
    (r"\log", "seed_000_bce", "b", r"1^T (\exp(\log(p)) - y)/N", r"1^T (\log(p) - y)/N"),
    (r"\ln", "seed_000_bce", "b", r"1^T (\exp \ln p - y)/N", r"1^T (\ln p - y)/N"),
    (r"\sigma", "seed_000_bce", "b", r"1^T (\sigma(z) - y)/N", r"1^T (\sigma(z) - y)"),
    ("σ", "seed_000_bce", "b", "1^T (σ(z) - y)/N", "1^T (σ(h w2) - y)/N"),
    (r"\sigma', σ', σ′", "seed_001_sigmoid_between", "W1", r"X^T (dL/dyhat W2^T \odot \sigma'(Z))",
     "X^T (dL/dyhat W2^T ⊙ σ′(Z) ⊙ σ'(Z))"),
    (r"\operatorname{ReLU}", "seed_000_bce", "w1", r"X^T ((p - y)/N w2^T ⊙ \operatorname{ReLU}'(a))",
     r"X^T ((p - y)/N w2^T ⊙ \operatorname{ReLU}(a))"),
    (r"\mathrm{softmax}", "mlp3_tanh", "b3", r"1^T (\mathrm{softmax}(S) - Y)/N", r"1^T (\mathrm{softmax}(S) - Y)"),
    (r"\hat", "seed_001_linreg_batch", "w", r"\frac{2}{N} X^T (\hat{y} - y)", r"\frac{1}{N} X^T (\hat{y} - y)"),
    (r"\bar", ACCENTED, None, r"\frac{2}{N} X^T \bar{r}", r"\frac{2}{N} X^T \bar{r} / 2"),
    (r"\tilde", ACCENTED, None, r"\frac{2}{N} X^T (\tilde{y} - y)", r"\frac{2}{N} X^T \tilde{y}"),
    (r"\mathbf", "seed_001_linreg_batch", "w", r"\frac{2}{N} \mathbf{X}^T (\hat{\mathbf{y}} - \mathbf{y})",
     r"\frac{2}{N} \mathbf{X}^T (\mathbf{y} - \hat{\mathbf{y}})"),
    (r"\boldsymbol", "seed_001_linreg_batch", "w", r"\frac{2}{N} \boldsymbol{X}^T (\hat{y} - y)",
     r"\frac{2}{N} \boldsymbol{X}^T \hat{y}"),
    (r"\bm", "seed_001_linreg_batch", "w", r"\frac{2}{N} \bm{X}^T (\bm{\hat{y}} - \bm{y})", r"\bm{X}^T (\bm{\hat{y}} - \bm{y})"),
    (r"^\top, ^{\top}", "seed_000_bce", "w2", r"h^\top (p - y)/N", r"(h^{\top} (p - y))^{\top}/N"),
    ("^T, ^{T}", "seed_000_bce", "w2", "h^{T} (p - y)/N", "h^T (p^T - y^T)/N"),
    (r"^{\mathsf{T}}, ^{\rm T}", "seed_000_bce", "w2", r"h^{\mathsf{T}} (p - y)/N", r"h^{\rm T} p/N"),
    (r"^\intercal", "seed_000_bce", "w2", r"h^\intercal (p - y)/N", r"h^\intercal (p - y)"),
    ("ᵀ", "seed_000_bce", "w2", "hᵀ (p - y)/N", "hᵀ (p - y)"),
    (".T", "seed_000_bce", "w2", "h.T @ (p - y)/N", "h.T @ (p - y)"),
    ("' (transpose)", "seed_000_bce", "w2", "h' (p - y)/N", "(h' (p - y))' /N / 2"),
    (r"\odot, ⊙", "seed_000_bce", "w1", r"X^T ((p - y)/N w2^T \odot 1[a > 0])", r"X^T ((p - y)/N w2^T ⊙ a)"),
    (r"\circ, ∘", "seed_000_bce", "w1", r"X^T ((p - y)/N w2^T \circ 1[a > 0])", r"X^T ((p - y)/N w2^T ∘ h)"),
    ("*", "seed_000_bce", "w1", "X^T ((p - y)/N w2^T * 1[a > 0])", "X^T ((p - y) w2^T * 1[a > 0])"),
    (r"\cdot (matrix product)", "seed_000_bce", "w2", r"h^T \cdot (p - y)/N", r"h^T \cdot (p - y) \cdot 2/N"),
    (r"\times (matrix product)", "seed_000_bce", "w2", r"h^T \times (p - y)/N", r"(p - y)^T \times h/N"),
    ("·, ×", "seed_000_bce", "w2", "h^T · (p - y)/N", "h^T × (p - y)"),
    ("@", "seed_000_bce", "w2", "h.T @ (p - y) / N", "h.T @ p / N"),
    (r"\frac", "seed_000_bce", "w2", r"\frac{1}{N} h^T (p - y)", r"\frac{2}{N} h^T (p - y)"),
    (r"\tfrac", "seed_000_bce", "w2", r"\tfrac{1}{N} h^T (p - y)", r"\tfrac{1}{2} h^T (p - y)"),
    (r"\dfrac", "seed_000_bce", "w2", r"\dfrac{h^T (p - y)}{N}", r"\dfrac{h^T (p - y)}{N^2}"),
    (r"\sum_i", "seed_000_bce", "b", r"\frac{1}{N} \sum_i (p_i - y_i)", r"\sum_i (p_i - y_i)"),
    (r"\sum_{i=1}^N, \sum_{i=1}^{N}", "seed_000_bce", "b", r"\frac{1}{N} \sum_{i=1}^{N} (p_{i} - y_{i})",
     r"\frac{1}{N} \sum_{i=1}^N p_i"),
    ("∑_i", "seed_000_bce", "b", "1/N ∑_i (p_i - y_i)", "1/N ∑_i (y_i - p_i)"),
    (r"\sum_i a_i^T b_i", "seed_000_bce", "w2", r"\frac{1}{N} \sum_i h_i^T (p_i - y_i)", r"\sum_i h_i^T (p_i - y_i)"),
    (r"\mathbb{1}[...]", "seed_000_bce", "w1", r"X^T ((p - y)/N w2^T ⊙ \mathbb{1}[a > 0])",
     r"X^T ((p - y) w2^T ⊙ \mathbb{1}[a > 0])"),
    ("1[...], 𝟙[...]", "seed_000_bce", "w1", "X^T ((p - y)/N w2^T ⊙ 𝟙[a > 0])", "X^T ((p - y)/N w2^T ⊙ 1[h > 0] ⊙ h)"),
    (r"\mathbf{1}^T, \mathbb{1}^T, 1^T", "seed_000_bce", "b", r"\mathbb{1}^T (p - y)/N", r"\mathbf{1}^T (p - y)"),
    (r"\frac{\partial L}{\partial z}", "seed_000_bce", "w2", r"h^T \frac{\partial L}{\partial z}",
     r"2 h^T \frac{\partial L}{\partial z}"),
    (r"\partial L / \partial z", "seed_000_bce", "w2", r"h^T \partial L / \partial z", r"h^T \partial L / \partial p"),
    (r"\frac{dL}{dz}, dL/dz, ∂L/∂z, dz", "seed_000_bce", "w2", r"h^T \frac{dL}{dz}", "h^T ∂L/∂z / N"),
    (r"\nabla_z L", "seed_000_bce", "w2", r"h^T \nabla_z L", r"(\nabla_{z} L)^T h"),
    ("W_1, W_{1}, W^{(1)}", "seed_001_sigmoid_between", "W1", "X^T (dL/dyhat W_2^T ⊙ A ⊙ (1 - A))",
     "X^T (dL/dyhat W_{2}^T ⊙ A) W^{(1)}^T W^{(1)}"),
    (r"\, \; \quad (spaces)", "seed_000_bce", "w2", r"h^T\,(p - y)\;/N\quad", r"h^T\,(p - y)\quad"),
    ("− (Unicode minus)", "seed_000_bce", "w2", "h^T (p − y)/N", "h^T (y − p)/N"),
]


def case(network, wrt):
    if isinstance(network, tuple):
        return network
    example = get(network)
    return example.loss, next(p for p in example.wrt if p.name == wrt), example.names


_TRUTHS: dict = {}


def truth(network, wrt):
    pytest.importorskip("torch", reason="autograd gives the independent truth's gradients")
    from ..hand_truth import HandTruth
    key = (id(network), wrt)
    if key not in _TRUTHS:
        _TRUTHS[key] = HandTruth(*case(network, wrt))
    return _TRUTHS[key]


@pytest.mark.parametrize(("spelling", "network", "wrt", "right", "wrong"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_a_spelling_accepts_a_right_answer_and_refuses_a_wrong_one(spelling, network, wrt, right, wrong):
    loss, param, names = case(network, wrt)
    for hand, expected in ((right, "right"), (wrong, "wrong")):
        assert truth(network, wrt).verdict(hand) == expected, hand
        result = derive.check(hand, loss, param, names=names)
        assert bool(result) == (expected == "right"), result.report()


def readme_spellings() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n### Spellings students write\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `(.*?)` \|", line).group(1) for line in rows]


def test_readme_lists_every_spelling_and_only_those():
    assert readme_spellings() == [s[0] for s in SPELLINGS]


NOT_FORMULAS = [
    ("Please see my answer on paper", "unknown name"),
    (r"\input{/etc/passwd}", r"the LaTeX command \input is not part of this grammar"),
    ("$$", "the formula is empty"),
    ("$X^T G", "unexpected character '$'"),
    (r"\sum_i", "the formula ends too early"),
    (r"\sum_i \sum_i (p_i - y_i)/N", "i is already the index of a sum around this one"),
    (r"\sum_{i=1}^{2} (p_i - y_i)/N", "the sum over the rows of p runs up to N"),
    (r"\sum_{i=2}^{N} (p_i - y_i)/N", "the sum over the rows runs from i=1"),
    (r"\sum_i h_i^T/N", r"write \sum_i a_i^T b_i (that is a^T b) or a sum of rows"),
]


@pytest.mark.parametrize(("text", "message"), NOT_FORMULAS)
def test_text_that_is_not_a_formula_is_a_parse_error_with_a_caret(text, message):
    loss, param, names = case("seed_000_bce", "w2")
    net = NetworkView(loss, param, names, None)
    with pytest.raises(ParseError, match=re.escape(message)) as raised:
        parse(text, net.scope)
    assert raised.value.args[0].splitlines()[-1].strip() == "^"
