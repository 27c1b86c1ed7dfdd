"""Random networks for the property tests, drawn by hypothesis and written as their SymPy declaration.

A drawn :class:`Network` is first a piece of Python source, a network file for ``derive sheet`` (it
defines ``loss``, ``wrt``, ``names`` and ``dims``), and only then the SymPy objects it defines. Its
``repr`` is that source, so a failing example shrinks to a minimal network that can be pasted and run.

What is drawn: 1 to 4 dense layers of widths 1 to 4 after a symbolic input of D features and a batch
of N (both 1 to 3), any of derive's activations, examples in rows (``X W + 1 b``) or in columns
(``W X + b 1^T``), residual connections, tied weights (a later layer reusing an earlier weight, as
is or transposed), an input whitened by ``(I + S^T S)^{-1}``, a loss among mse, bce on a sigmoid and
softmax cross-entropy, and extra matrix-calculus terms on the parameters: weight decay ``tr(P^T P)``,
quadratic forms ``tr(P^T Q P)``, log-determinants ``log det(I + P^T P)`` and ``tr((I + P^T P)^{-1})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

ACTIVATIONS = [None, "relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "silu", "softplus"]
LOSSES = ["mse", "mse_half", "bce", "cross_entropy"]
EXTRAS = ["decay", "quadratic", "quadratic_param", "logdet", "inverse_trace"]
SLOPES = ["Rational(1, 10)", "Rational(1, 2)", "2"]

HEADER = """\
from sympy import Determinant, Identity, Inverse, MatrixSymbol, OneMatrix, Rational, Symbol, Trace, log
from derive import bce, cross_entropy, elu, gelu, leaky_relu, mse, relu, sigmoid, silu, softplus, tanh
N = Symbol("N", integer=True, positive=True)
D = Symbol("D", integer=True, positive=True)
"""


@dataclass(frozen=True)
class Layer:
    width: int
    activation: str | None
    slope: str = ""                      # leaky_relu's or elu's alpha, as source
    bias: bool = True
    residual: bool = False               # H_k = f(Z_k) + H_{k-1}
    tie: tuple[int, bool] | None = None  # (earlier layer, transposed): reuse its weight
    whiten: bool = False                 # the layer's input is H_{k-1} (I + S_k^T S_k)^{-1}


@dataclass(frozen=True)
class Extra:
    kind: str
    param: str          # the parameter it acts on
    coefficient: str    # as source


@dataclass(frozen=True)
class Network:
    rows: bool                  # examples in rows (X W + 1 b) or in columns (W X + b 1^T)
    layers: tuple[Layer, ...]
    loss: str
    reduction: str
    extras: tuple[Extra, ...]
    input_in_wrt: bool          # differentiate with respect to X too
    named: bool                 # pass names={"Z1": Z1, ...}
    n: int
    d: int
    seed: int
    source: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "source", declaration(self))

    def __repr__(self) -> str:
        return "\n" + self.source

    def build(self) -> dict:
        """Run the declaration: the namespace with loss, wrt, names and dims."""
        namespace: dict = {}
        exec(compile(self.source, "<drawn network>", "exec"), namespace)  # noqa: S102 - our own declaration
        return namespace

    def values(self, namespace: dict) -> dict:
        """Random numbers for every matrix of the network, targets valid for its loss."""
        rng = np.random.default_rng(self.seed)
        dims = {namespace["N"]: self.n, namespace["D"]: self.d}
        values = {}
        for symbol in sorted(matrices(namespace["loss"]), key=lambda s: s.name):
            shape = tuple(int(s.xreplace(dims)) for s in symbol.shape)
            values[symbol.name] = rng.uniform(-1.0, 1.0, size=shape)
        target = values["Y"]
        if self.loss == "bce":
            values["Y"] = rng.uniform(0.05, 0.95, size=target.shape)
        elif self.loss == "cross_entropy":
            weights = rng.uniform(0.1, 1.0, size=target.shape)
            values["Y"] = weights / weights.sum(axis=1 if self.rows else 0, keepdims=True)
        return values

    def features(self) -> list[str]:
        """What this network exercises, for hypothesis's statistics (--hypothesis-show-statistics)."""
        found = [f"{len(self.layers)} layer(s)", f"loss {self.loss}", "rows" if self.rows else "columns"]
        found += [f"extra {e.kind}" for e in self.extras]
        for flag in ("residual", "tie", "whiten"):
            if any(getattr(layer, flag) for layer in self.layers):
                found.append(flag)
        found += [f"activation {layer.activation}" for layer in self.layers]
        return found

    @property
    def dims(self) -> dict:
        return {"N": self.n, "D": self.d}


def matrices(expr) -> set:
    from sympy import MatrixSymbol
    return {a for a in expr.atoms(MatrixSymbol)}


# --- the declaration --------------------------------------------------------------------------------

def _product(rows: bool, data: str, weight: str) -> str:
    return f"{data}*{weight}" if rows else f"{weight}*{data}"


def _shape(rows: bool, inputs: str, outputs: str) -> tuple[str, str]:
    return (inputs, outputs) if rows else (outputs, inputs)


def declaration(net: Network) -> str:
    rows = net.rows
    lines = [HEADER.rstrip("\n")]
    lines.append('X = MatrixSymbol("X", N, D)' if rows else 'X = MatrixSymbol("X", D, N)')
    wrt, names = (["X"] if net.input_in_wrt else []), []
    data, width = "X", "D"
    for k, layer in enumerate(net.layers, start=1):
        if layer.whiten:
            lines.append(f'S{k} = MatrixSymbol("S{k}", {width}, {width})')
            inverse = f"Inverse(Identity({width}) + S{k}.T*S{k})"
            lines.append(f"V{k} = {_product(rows, data, inverse)}")
            data = f"V{k}"
            wrt.append(f"S{k}")
        if layer.tie is None:
            rows_, cols = _shape(rows, width, str(layer.width))
            lines.append(f'W{k} = MatrixSymbol("W{k}", {rows_}, {cols})')
            wrt.append(f"W{k}")
        else:
            j, transposed = layer.tie
            lines.append(f"W{k} = W{j}.T" if transposed else f"W{k} = W{j}")
        z = _product(rows, data, f"W{k}")
        if layer.bias:
            lines.append(f'b{k} = MatrixSymbol("b{k}", 1, {layer.width})' if rows
                         else f'b{k} = MatrixSymbol("b{k}", {layer.width}, 1)')
            z += f" + OneMatrix(N, 1)*b{k}" if rows else f" + b{k}*OneMatrix(1, N)"
            wrt.append(f"b{k}")
        lines.append(f"Z{k} = {z}")
        names.append(f'"Z{k}": Z{k}')
        h = f"Z{k}" if layer.activation is None else (
            f"{layer.activation}(Z{k}, {layer.slope})" if layer.slope else f"{layer.activation}(Z{k})")
        if layer.residual:
            h += f" + {data}"
        lines.append(f"H{k} = {h}")
        data, width = f"H{k}", str(layer.width)
    lines.append(f'Y = MatrixSymbol("Y", N, {width})' if rows else f'Y = MatrixSymbol("Y", {width}, N)')
    loss = {"mse": "mse({}, Y{})", "mse_half": "mse({}, Y, half=True{})", "bce": "bce({}, Y{})",
            "cross_entropy": "cross_entropy({}, Y{})"}[net.loss]
    options = ("" if net.reduction == "mean" else ', reduction="sum"') + ("" if rows else ', examples="columns"')
    terms = [loss.format(data, options)]
    for m, extra in enumerate(net.extras, start=1):
        terms.append(_extra(extra, m, lines, wrt))
    lines.append("loss = " + " + ".join(terms))
    lines.append(f"wrt = [{', '.join(wrt)}]")
    lines.append("names = {" + (", ".join(names) if net.named else "") + "}")
    lines.append(f"dims = {{N: {net.n}, D: {net.d}}}")
    return "\n".join(lines) + "\n"


def _extra(extra: Extra, m: int, lines: list, wrt: list) -> str:
    p, c = extra.param, extra.coefficient
    if extra.kind == "decay":
        return f"{c}*Trace({p}.T*{p})"
    if extra.kind in ("quadratic", "quadratic_param"):
        lines.append(f'Q{m} = MatrixSymbol("Q{m}", {p}.rows, {p}.rows)')
        if extra.kind == "quadratic_param":
            wrt.append(f"Q{m}")
        return f"{c}*Trace({p}.T*Q{m}*{p})"
    gram = f"Identity({p}.cols) + {p}.T*{p}"
    if extra.kind == "logdet":
        return f"{c}*log(Determinant({gram}))"
    return f"{c}*Trace(Inverse({gram}))"


# --- the strategy -----------------------------------------------------------------------------------

@st.composite
def layers(draw, loss: str, most: int = 4, widest: int = 4) -> tuple[Layer, ...]:
    count = draw(st.integers(1, most))
    drawn: list[Layer] = []
    widths = ["D"]   # widths[k]: the input width of layer k + 1 (D is symbolic)
    for k in range(1, count + 1):
        last = k == count
        previous = widths[-1]
        tie = None
        # a weight can be reused when its shape fits: only hidden layers (k >= 2) have concrete shapes
        candidates = [(j, t) for j in range(2, k) for t in (False, True)
                      if (widths[j - 1] if not t else str(drawn[j - 1].width)) == previous]
        if candidates and draw(st.booleans()):
            tie = draw(st.sampled_from(candidates))
        if tie is not None:
            j, transposed = tie
            width = int(widths[j - 1]) if transposed else drawn[j - 1].width
        else:
            width = draw(st.integers(1, widest))
        residual = previous != "D" and int(previous) == width and draw(st.booleans())
        if last and loss == "bce":
            activation = "sigmoid"
            residual = False   # probabilities must stay in (0, 1)
        elif last and loss == "cross_entropy":
            activation = None
        else:
            activation = draw(st.sampled_from(ACTIVATIONS))
        slope = draw(st.sampled_from(SLOPES)) if activation in ("leaky_relu", "elu") else ""
        drawn.append(Layer(width, activation, slope, bias=draw(st.booleans()) or last, residual=residual,
                           tie=tie, whiten=draw(st.integers(0, 5)) == 0))
        widths.append(str(width))
    return tuple(drawn)


def parameter_names(drawn: tuple[Layer, ...]) -> list[str]:
    names = []
    for k, layer in enumerate(drawn, start=1):
        if layer.tie is None:
            names.append(f"W{k}")
        if layer.bias:
            names.append(f"b{k}")
    return names


@st.composite
def networks(draw, most: int = 4, widest: int = 4, batch: int = 3) -> Network:
    """A random network of at most ``most`` layers ``widest`` wide, N and D at most ``batch``."""
    loss = draw(st.sampled_from(LOSSES))
    drawn = draw(layers(loss, most, widest))
    params = parameter_names(drawn)
    extras = tuple(draw(st.lists(st.builds(Extra, st.sampled_from(EXTRAS), st.sampled_from(params),
                                           st.sampled_from(["1", "Rational(1, 10)", "Rational(-1, 3)"])),
                                 max_size=2)))
    return Network(rows=draw(st.booleans()), layers=drawn, loss=loss, reduction=draw(st.sampled_from(["mean", "sum"])),
                   extras=extras, input_in_wrt=draw(st.integers(0, 3)) == 0, named=draw(st.booleans()),
                   n=draw(st.integers(1, batch)), d=draw(st.integers(1, batch)), seed=draw(st.integers(0, 2**16)))
