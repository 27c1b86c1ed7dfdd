"""What the sheet says in words about a derivation: step headings named by what a step does, the
pass-through sum steps folded into the step they feed, the backward pass at a glance (note 003's
``ds = p - y, dW2 = ds h1^T, ...``), the loss's scale ``s`` and the notation a page uses.

Everything here reads the derivation (``g.steps``, ``g.rule_of``, ``g.compact``, ``g.gradient_of``)
and the activations' records; nothing differentiates.
"""

from __future__ import annotations

import re

from sympy import Add, Basic, MatAdd, MatrixSymbol

from ..core.derivation import Derivation
from ..core.elementwise import Elementwise, record_of
from ..core.graph import Step
from ..core.losses import Loss
from ..core.symbols import Intermediate, LossGradient
from .fit import tex_width
from .latex import latex

__all__ = ["backward_summary", "feeders", "is_pass_through", "loss_scale", "notation", "step_title"]

# How a heading names an activation ("through the sigmoid").
_SPOKEN = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU",
           "exp": "exponential", "log": "logarithm"}
# A heading shows the operation's formula when it is at most this wide (ems).
HEADING_EM = 24.0


def is_pass_through(step: Step) -> bool:
    """A sum hands its upstream gradient unchanged to a term: a step with nothing to show."""
    return isinstance(step.node, (MatAdd, Add)) and step.local is None and step.result == step.upstream


def feeders(g: Derivation) -> dict[Step, list[Step]]:
    """Each shown step -> the pass-through steps folded into it (the sums whose term it goes back through)."""
    folded: dict[Step, list[Step]] = {}
    passes = [s for s in g.steps if is_pass_through(s)]
    for step in g.steps:
        if is_pass_through(step):
            continue
        folded[step] = [p for p in passes if p.target == step.output and p.result == step.upstream]
    return folded


def step_title(step: Step, folded: list[Step]) -> str:
    """The heading's words: "through the sigmoid", "through $h w_{2} + \\mathbf{1} b$"."""
    node = step.node
    if isinstance(node, Elementwise):
        record, _ = record_of(type(node))
        return f"through the {_SPOKEN.get(record.name, record.name)}"
    if isinstance(node, Loss):
        return f"through the {step.rule}"
    shown = folded[0].node if folded else node
    formula = latex(shown)
    if tex_width(formula) <= HEADING_EM:
        return f"through ${formula}$"
    return f"through the {step.rule}"


def loss_scale(step: Step, formula: str) -> str | None:
    """The sentence defining the ``s`` of a loss's rule ``formula``, or None when it has none."""
    if not isinstance(step.node, Loss) or not re.search(r"(?<![\\A-Za-z])s(?![A-Za-z])", formula):
        return None
    return rf"Here $s = {latex(step.node.scale)}$ is the loss's scale (the factor in front of its sum)."


def backward_summary(g: Derivation) -> list[tuple[str, str, Basic]]:
    """(gradient's name, "=", compact total) of every named quantity and parameter, in the sweep's order."""
    out, seen = [], set()
    for step in g.steps:
        target = step.target
        if target in seen or not isinstance(target, MatrixSymbol):
            continue
        seen.add(target)
        if target in g.params:
            out.append((latex(g.adjoint(target)), "=", g.compact(target)))
        elif isinstance(target, Intermediate):
            out.append((latex(LossGradient(target.name, *target.shape)), "=", g.gradient_of(target)))
    return out


# Notation a page may use, each said once, where the page's symbols first need it: (what to look for
# in the printed page, the sentence).
_NOTATION = (
    (r"\mathbf{1}", r"$\mathbf{1}$ is a matrix of ones, its shape the one its product needs"),
    (r"\odot", r"$\odot$ multiplies entry by entry (the Hadamard product)"),
    (r"\oslash", r"$\oslash$ divides entry by entry"),
    (r"^{\circ", r"$A^{\circ k}$ raises each entry to the power $k$"),
    (r"\mathbb{1}\left[", r"$\mathbb{1}[a > 0]$ is 1 where $a > 0$ and 0 elsewhere (the indicator)"),
    (r"\Phi", (r"$\Phi(x)$ is the standard normal distribution function, "
               r"$\phi(x) = e^{-x^{2}/2} / \sqrt{2\pi}$ its density")),
    (r"\sum_{\text{rows}}", (r"$\sum_{\text{rows}} G = \mathbf{1}^{\top} G$ adds the rows of $G$ (one per "
                             r"example), $\sum_{\text{cols}} G = G\,\mathbf{1}$ its columns")),
)


def notation(g: Derivation, page: str) -> list[str]:
    """Sentences defining the activations the derivation applies and the symbols ``page`` uses."""
    out, seen = [], set()
    for f in g.forward:
        for node in f.definition.atoms(Elementwise) if isinstance(f.definition, Basic) else ():
            record, _ = record_of(type(node))
            if record.name in seen or not record.definition:
                continue
            seen.add(record.name)
            out.append(f"${record.definition}$, so ${record.slope}$" if record.slope else f"${record.definition}$")
    return out + [sentence for mark, sentence in _NOTATION if mark in page]
