"""Random networks for the property tests, drawn by hypothesis and written as their SymPy declaration.

A drawn :class:`Network` is first a piece of Python source, a network file for ``derive sheet`` (it
defines ``loss``, ``wrt``, ``names`` and ``dims``), and only then the SymPy objects it defines. Its
``repr`` is that source, so a failing example shrinks to a minimal network that can be pasted and run.

What is drawn: 1 to 4 dense layers of widths 1 to 4 after a symbolic input of D features and a batch
of N (both 1 to 3), any of derive's activations, examples in rows (``X W + 1 b``) or in columns
(``W X + b 1^T``), residual connections, tied weights (a later layer reusing an earlier weight, as
is or transposed), a loss among mse, bce on a sigmoid and softmax cross-entropy, and extra
matrix-calculus terms on the parameters: weight decay ``tr(P^T P)``, quadratic forms ``tr(P^T Q P)``,
log-determinants ``log det(I + P^T P)`` and ``tr((I + P^T P)^{-1})``. And the spellings SymPy hides
from a graph walk (derive/canonical.py), which the later shapes of this file are about:

* a layer's input whitened by ``(I + S^T S)^{-1}``, by a ridge ``(S^T S + lam I)^{-1}`` or by
  ``(exp(s) I + S^T S)^{-1}``, with ``lam`` and ``s`` 1 x 1 parameters used as scalars;
* BlockMatrix features ``[H, f(H C)]`` feeding the layer (a block column ``[H; f(C H)]`` with
  examples in columns), and a 2 x 2 block grid in an extra term;
* explicit matrices of parameter entries mixing a layer's output: a rotation from a 1 x 1 angle, a
  scaled identity or a diagonal of 1 x 1 scalars, the diagonal or lower triangle of a small parameter;
* 1 x 1 parameters as scalars on the pre-activation: a temperature ``Z / t``, a scale ``t Z``, a
  learnable exponent ``f(Z)^t`` (on a positive activation);
* ones-matrix reductions and broadcast sums: batch centring ``Z - 1 1^T Z / N``, the batch mean
  spread back over the batch (mean pooling), row sums spread over the row, biases that are sums of
  two broadcast rows ``1 b + 1 u``;
* cross-entropy of targets whose rows need not sum to 1 (``weighted``), and the declared form
  ``targets_sum_to_one=True`` with one-hot or simplex targets;
* negative matrix powers ``Inverse(G)**2``, ``G**-2``, ``Inverse(G)*Inverse(G)`` of G = I + P^T P,
  and ``K**-2`` of a square parameter drawn near I;
* index-sum spellings ``(v.T*Q*v)[0, 0]`` and ``(v.T*P*P.T*v)[0, 0]`` with a vector parameter v.

:meth:`Network.values` draws the test's own numbers in the loss's domain (positive temperatures,
exponents and ridge parameters, K near I, targets by kind); :meth:`Network.new_shapes` lists which of
the later shapes a network uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from .doit_once import doit_once

ACTIVATIONS = [None, "relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "silu", "softplus"]
POSITIVE_ACTIVATIONS = ("sigmoid", "softplus")   # what a learnable exponent may act on
CONCAT_ACTIVATIONS = [None, "tanh", "relu", "sigmoid"]
LOSSES = ["mse", "mse_half", "bce", "cross_entropy", "cross_entropy_declared"]
TARGETS = {"cross_entropy": ["weighted", "weighted", "simplex", "one-hot"],
           "cross_entropy_declared": ["simplex", "one-hot"]}
EXTRAS = ["decay", "quadratic", "quadratic_param", "logdet", "inverse_trace",
          "block_grid", "inverse_power", "index_sum"]
VARIANTS = {"block_grid": 3, "inverse_power": 5, "index_sum": 3}
NEW_EXTRAS = ("block_grid", "inverse_power", "index_sum")
SLOPES = ["Rational(1, 10)", "Rational(1, 2)", "2"]
WHITENINGS = ["identity", "ridge", "noise"]
SCALARS = ["temperature", "scale", "exponent"]
POOLS = ["centre", "mean", "row_sum"]
MIXES = ["rotation", "scaled_identity", "diagonal", "vector_diagonal", "triangular"]

HEADER = """\
from sympy import (BlockMatrix, Determinant, HadamardPower, Identity, Inverse, Matrix, MatrixSymbol, OneMatrix,
                   Rational, Symbol, Trace, ZeroMatrix, cos, exp, log, sin)
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
    residual: bool = False               # H_k = f(Z_k) + the layer's input
    tie: tuple[int, bool] | None = None  # (earlier layer, transposed): reuse its weight
    whiten: str | None = None            # the layer's input times (I + S^T S)^-1, (S^T S + lam I)^-1, (e^s I + S^T S)^-1
    concat: tuple[int, str | None] | None = None   # (c, f): the layer's input is [H, f(H C_k)], C_k c wide
    bias2: bool = False                  # the bias is a sum of two broadcast rows, 1 b_k + 1 u_k
    scalar: str | None = None            # a 1 x 1 t_k: Z_k / t_k, t_k Z_k or f(Z_k)^t_k
    pool: str | None = None              # Z_k centred over the batch, H_k plus its batch mean, or its row sums
    mix: str | None = None               # H_k times an explicit matrix of parameter entries


@dataclass(frozen=True)
class Extra:
    kind: str
    param: str          # the parameter it acts on
    coefficient: str    # as source
    variant: int = 0    # which spelling of the kind (VARIANTS)


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
    targets: str = "simplex"    # cross-entropy's targets: simplex, one-hot or weighted (rows not summing to 1)
    source: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "source", declaration(self))

    def __repr__(self) -> str:
        return "\n" + self.source

    def build(self) -> dict:
        """Run the declaration: the namespace with loss, wrt, names and dims (SymPy's doit once per
        expression object: tests/doit_once.py)."""
        with doit_once():
            return self.build_plainly()

    def build_plainly(self) -> dict:
        """Run the declaration as a network file runs, each product's doit walking its whole tree."""
        namespace: dict = {}
        exec(compile(self.source, "<drawn network>", "exec"), namespace)  # noqa: S102 - our own declaration
        return namespace

    def values(self, namespace: dict) -> dict:
        """Random numbers for every matrix of the network, each in the loss's domain, targets valid for its loss."""
        rng = np.random.default_rng(self.seed)
        dims = {namespace["N"]: self.n, namespace["D"]: self.d}
        kinds = self.domain()
        values = {}
        for symbol in sorted(matrices(namespace["loss"]), key=lambda s: s.name):
            shape = tuple(int(s.xreplace(dims)) for s in symbol.shape)
            kind = kinds.get(symbol.name)
            if kind == "positive":
                values[symbol.name] = rng.uniform(0.5, 1.5, size=shape)
            elif kind == "near identity":   # condition number under 3, not symmetric
                values[symbol.name] = np.eye(shape[0]) + rng.uniform(-0.5, 0.5, size=shape) / shape[0]
            else:
                values[symbol.name] = rng.uniform(-1.0, 1.0, size=shape)
        values["Y"] = self._targets(rng, values["Y"].shape)
        return values

    def _targets(self, rng, shape: tuple) -> np.ndarray:
        examples = 1 if self.rows else 0   # the axis an example's entries lie along
        if self.loss == "bce":
            return rng.uniform(0.05, 0.95, size=shape)
        if not self.loss.startswith("cross_entropy"):
            return rng.uniform(-1.0, 1.0, size=shape)
        if self.targets == "one-hot":
            classes = shape[examples]
            hot = np.eye(classes)[rng.integers(0, classes, size=shape[1 - examples])]
            return hot if self.rows else hot.T
        weights = rng.uniform(0.1, 1.0, size=shape)
        if self.targets == "weighted":   # positive, each example's summing to anything in (0.1 c, 2 c)
            return 2 * weights
        return weights / weights.sum(axis=examples, keepdims=True)

    def domain(self) -> dict[str, str]:
        """The matrices the loss needs drawn away from uniform(-1, 1): name -> "positive" or "near identity"."""
        kinds = {}
        for k, layer in enumerate(self.layers, start=1):
            if layer.scalar in ("temperature", "exponent"):
                kinds[f"t{k}"] = "positive"
            if layer.whiten == "ridge":
                kinds[f"lam{k}"] = "positive"
        for m, extra in enumerate(self.extras, start=1):
            if extra.kind == "inverse_power" and extra.variant == 4:
                kinds[f"K{m}"] = "near identity"
        return kinds

    def new_shapes(self) -> list[str]:
        """Which of the shapes SymPy hides from a graph walk (blocks, entries, scalars, ones ...) it uses."""
        found = []
        for layer in self.layers:
            if layer.whiten in ("ridge", "noise"):
                found.append(f"whiten {layer.whiten}")
            if layer.concat:
                found.append("concatenated features")
            if layer.bias2:
                found.append("two broadcast rows")
            found += [f"{what} {getattr(layer, what)}" for what in ("scalar", "pool", "mix") if getattr(layer, what)]
        found += [f"extra {e.kind} {e.variant}" for e in self.extras if e.kind in NEW_EXTRAS]
        if self.loss == "cross_entropy_declared" or (self.loss == "cross_entropy" and self.targets == "weighted"):
            found.append(f"{self.loss} targets {self.targets}")
        return sorted(set(found))

    def features(self) -> list[str]:
        """What this network exercises, for hypothesis's statistics (--hypothesis-show-statistics)."""
        found = [f"{len(self.layers)} layer(s)", f"loss {self.loss}", "rows" if self.rows else "columns"]
        found += [f"extra {e.kind}" for e in self.extras]
        for flag in ("residual", "tie", "whiten"):
            if any(getattr(layer, flag) for layer in self.layers):
                found.append(flag)
        found += [f"activation {layer.activation}" for layer in self.layers]
        new = self.new_shapes()
        return found + new + (["uses a new shape"] if new else [])

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


def _call(activation: str | None, argument: str, slope: str = "") -> str:
    if activation is None:
        return argument
    return f"{activation}({argument}, {slope})" if slope else f"{activation}({argument})"


def _widened(width: str, extra: int) -> str:
    return str(int(width) + extra) if width.isdigit() else f"{width} + {extra}"


def declaration(net: Network) -> str:
    rows = net.rows
    lines = [HEADER.rstrip("\n")]
    lines.append('X = MatrixSymbol("X", N, D)' if rows else 'X = MatrixSymbol("X", D, N)')
    wrt, names = (["X"] if net.input_in_wrt else []), []
    data, width = "X", "D"
    for k, layer in enumerate(net.layers, start=1):
        if layer.whiten:
            data = _whiten(layer.whiten, k, rows, data, width, lines, wrt)
        if layer.concat:
            c, f = layer.concat
            lines.append(f'C{k} = MatrixSymbol("C{k}", {", ".join(_shape(rows, width, str(c)))})')
            feature = _call(f, _product(rows, data, f"C{k}"))
            grid = f"[[{data}, {feature}]]" if rows else f"[[{data}], [{feature}]]"
            lines.append(f"F{k} = BlockMatrix({grid})")
            data, width = f"F{k}", _widened(width, c)
            wrt.append(f"C{k}")
        if layer.tie is None:
            rows_, cols = _shape(rows, width, str(layer.width))
            lines.append(f'W{k} = MatrixSymbol("W{k}", {rows_}, {cols})')
            wrt.append(f"W{k}")
        else:
            j, transposed = layer.tie
            lines.append(f"W{k} = W{j}.T" if transposed else f"W{k} = W{j}")
        z = _product(rows, data, f"W{k}")
        for bias in (f"b{k}", f"u{k}")[:(1 + layer.bias2) if layer.bias else 0]:
            lines.append(f'{bias} = MatrixSymbol("{bias}", 1, {layer.width})' if rows
                         else f'{bias} = MatrixSymbol("{bias}", {layer.width}, 1)')
            z += f" + OneMatrix(N, 1)*{bias}" if rows else f" + {bias}*OneMatrix(1, N)"
            wrt.append(bias)
        if layer.scalar in ("temperature", "scale"):
            lines.append(f't{k} = MatrixSymbol("t{k}", 1, 1)')
            z = f"({z})*(1/t{k}[0, 0])" if layer.scalar == "temperature" else f"t{k}[0, 0]*({z})"
            wrt.append(f"t{k}")
        lines.append(f"Z{k} = {z}")
        names.append(f'"Z{k}": Z{k}')
        pre = f"Z{k}"
        if layer.pool == "centre":   # minus the batch mean: 1 1^T Z / N
            lines.append(f"A{k} = Z{k} - OneMatrix(N, N)*Z{k}/N" if rows else f"A{k} = Z{k} - Z{k}*OneMatrix(N, N)/N")
            pre = f"A{k}"
        h = _call(layer.activation, pre, layer.slope)
        if layer.scalar == "exponent":
            lines.append(f't{k} = MatrixSymbol("t{k}", 1, 1)')
            h = f"HadamardPower({h}, t{k}[0, 0])"
            wrt.append(f"t{k}")
        if layer.residual:
            h += f" + {data}"
        lines.append(f"H{k} = {h}")
        data, width = f"H{k}", str(layer.width)
        if layer.pool in ("mean", "row_sum"):
            data = _pool(layer.pool, k, rows, layer.width, lines)
        if layer.mix:
            data = _mix(layer.mix, k, rows, layer.width, lines, wrt)
    lines.append(f'Y = MatrixSymbol("Y", N, {width})' if rows else f'Y = MatrixSymbol("Y", {width}, N)')
    loss = {"mse": "mse({}, Y{})", "mse_half": "mse({}, Y, half=True{})", "bce": "bce({}, Y{})",
            "cross_entropy": "cross_entropy({}, Y{})",
            "cross_entropy_declared": "cross_entropy({}, Y, targets_sum_to_one=True{})"}[net.loss]
    options = ("" if net.reduction == "mean" else ', reduction="sum"') + ("" if rows else ', examples="columns"')
    terms = [loss.format(data, options)]
    for m, extra in enumerate(net.extras, start=1):
        terms.append(_extra(extra, m, lines, wrt))
    lines.append("loss = " + " + ".join(terms))
    lines.append(f"wrt = [{', '.join(wrt)}]")
    lines.append("names = {" + (", ".join(names) if net.named else "") + "}")
    lines.append(f"dims = {{N: {net.n}, D: {net.d}}}")
    if net.loss.startswith("cross_entropy") or net.domain():
        special = ", ".join(f"{name} {kind}" for name, kind in net.domain().items())
        targets = f"Y {net.targets}" if net.loss.startswith("cross_entropy") else ""
        lines.append(f"# the property test draws {', '.join(filter(None, (targets, special)))}")
    lines.append(f"# values: tests/networks.py Network.values, seed {net.seed}")
    return "\n".join(lines) + "\n"


def _whiten(kind: str, k: int, rows: bool, data: str, width: str, lines: list, wrt: list) -> str:
    lines.append(f'S{k} = MatrixSymbol("S{k}", {width}, {width})')
    wrt.append(f"S{k}")
    gram = f"S{k}.T*S{k}"
    if kind == "identity":
        inverse = f"Inverse(Identity({width}) + {gram})"
    elif kind == "ridge":
        lines.append(f'lam{k} = MatrixSymbol("lam{k}", 1, 1)')
        inverse = f"Inverse({gram} + lam{k}[0, 0]*Identity({width}))"
        wrt.append(f"lam{k}")
    else:  # a noise level kept positive by its log-scale: exp(s) I
        lines.append(f'ls{k} = MatrixSymbol("ls{k}", 1, 1)')
        inverse = f"Inverse(exp(ls{k}[0, 0])*Identity({width}) + {gram})"
        wrt.append(f"ls{k}")
    lines.append(f"V{k} = {_product(rows, data, inverse)}")
    return f"V{k}"


def _pool(kind: str, k: int, rows: bool, width: int, lines: list) -> str:
    h = f"H{k}"
    if kind == "mean":   # the batch mean (mean pooling), spread back over the batch
        lines.append(f"P{k} = OneMatrix(1, N)*{h}/N" if rows else f"P{k} = {h}*OneMatrix(N, 1)/N")
        lines.append(f"G{k} = {h} + OneMatrix(N, 1)*P{k}" if rows else f"G{k} = {h} + P{k}*OneMatrix(1, N)")
    else:                # each example's sum over its features, spread over them
        spread = f"OneMatrix({width}, 1)*OneMatrix(1, {width})"
        lines.append(f"G{k} = {h} + {h}*{spread}" if rows else f"G{k} = {h} + {spread}*{h}")
    return f"G{k}"


def _mix(kind: str, k: int, rows: bool, width: int, lines: list, wrt: list) -> str:
    zero = "0"
    if kind == "rotation":
        lines.append(f'a{k} = MatrixSymbol("a{k}", 1, 1)')
        wrt.append(f"a{k}")
        c, s = f"cos(a{k}[0, 0])", f"sin(a{k}[0, 0])"
        grid = [[c, f"-{s}"], [s, c]]
    elif kind == "scaled_identity":
        lines.append(f'g{k} = MatrixSymbol("g{k}", 1, 1)')
        wrt.append(f"g{k}")
        grid = [[f"g{k}[0, 0]" if i == j else zero for j in range(width)] for i in range(width)]
    elif kind == "diagonal":
        scalars = [f"d{k}{chr(97 + i)}" for i in range(width)]
        lines.append(f"{', '.join(scalars)} = " + ", ".join(f'MatrixSymbol("{s}", 1, 1)' for s in scalars))
        wrt.extend(scalars)
        grid = [[f"{scalars[i]}[0, 0]" if i == j else zero for j in range(width)] for i in range(width)]
    elif kind == "vector_diagonal":
        lines.append(f'e{k} = MatrixSymbol("e{k}", {width}, 1)')
        wrt.append(f"e{k}")
        grid = [[f"e{k}[{i}, 0]" if i == j else zero for j in range(width)] for i in range(width)]
    else:  # triangular: the lower triangle of a square parameter's entries
        lines.append(f'L{k} = MatrixSymbol("L{k}", {width}, {width})')
        wrt.append(f"L{k}")
        grid = [[f"L{k}[{i}, {j}]" if j <= i else zero for j in range(width)] for i in range(width)]
    lines.append(f"M{k} = Matrix([" + ", ".join("[" + ", ".join(row) + "]" for row in grid) + "])")
    lines.append(f"O{k} = {_product(rows, f'H{k}', f'M{k}')}")
    return f"O{k}"


def _extra(extra: Extra, m: int, lines: list, wrt: list) -> str:
    p, c, variant = extra.param, extra.coefficient, extra.variant
    if extra.kind == "decay":
        return f"{c}*Trace({p}.T*{p})"
    if extra.kind in ("quadratic", "quadratic_param"):
        lines.append(f'Q{m} = MatrixSymbol("Q{m}", {p}.rows, {p}.rows)')
        if extra.kind == "quadratic_param":
            wrt.append(f"Q{m}")
        return f"{c}*Trace({p}.T*Q{m}*{p})"
    if extra.kind == "block_grid":
        grid = ([[p, f"{p}*{p}.T"], [f"{p}.T*{p}", f"{p}.T"]] if variant < 2 else
                [[p, f"ZeroMatrix({p}.rows, {p}.rows)"], [f"OneMatrix({p}.cols, {p}.cols)", f"{p}.T"]])
        lines.append(f"B{m} = BlockMatrix([" + ", ".join("[" + ", ".join(row) + "]" for row in grid) + "])")
        return f"{c}*Trace(B{m}*B{m})" if variant == 1 else f"{c}*Trace(B{m}.T*B{m})"
    if extra.kind == "index_sum":   # SymPy writes the entry of the product as an index Sum (symbolic dims)
        lines.append(f'v{m} = MatrixSymbol("v{m}", {p}.rows, 1)')
        wrt.append(f"v{m}")
        if variant == 0:
            lines.append(f'Q{m} = MatrixSymbol("Q{m}", {p}.rows, {p}.rows)')
            wrt.append(f"Q{m}")
            return f"{c}*(v{m}.T*Q{m}*v{m})[0, 0]"
        entry = f"(v{m}.T*{p}*{p}.T*v{m})[0, 0]"
        return f"{c}*{entry}" if variant == 1 else f"{c}*{entry}**2"
    gram = f"Identity({p}.cols) + {p}.T*{p}"
    if extra.kind == "logdet":
        return f"{c}*log(Determinant({gram}))"
    if extra.kind == "inverse_trace":
        return f"{c}*Trace(Inverse({gram}))"
    # inverse_power: negative powers of a well-conditioned square matrix
    lines.append(f"G{m}_ = {gram}")
    power = [f"Inverse(G{m}_)**2", f"G{m}_**-2", f"Inverse(G{m}_)*Inverse(G{m}_)", f"{p}*G{m}_**-2*{p}.T"]
    if variant < 4:
        return f"{c}*Trace({power[variant]})"
    lines.append(f'K{m} = MatrixSymbol("K{m}", {p}.cols, {p}.cols)')
    wrt.append(f"K{m}")
    return f"{c}*Trace(K{m}**-2*{p}.T*{p})"


# --- the strategy -----------------------------------------------------------------------------------

def _maybe(draw, options: list, one_in: int):
    """One of ``options`` once in ``one_in`` draws, else None."""
    return draw(st.sampled_from(options)) if draw(st.integers(1, one_in)) == 1 else None


@st.composite
def layers(draw, loss: str, most: int = 4, widest: int = 4, new: int = 4) -> tuple[Layer, ...]:
    """``new``: each later shape (blocks, scalars, pools, mixes, two rows) is drawn once in that many layers."""
    count = draw(st.integers(1, most))
    drawn: list[Layer] = []
    inputs: list[str] = []   # inputs[k - 1]: the input width of layer k (after its concatenation)
    previous = "D"           # the output width of the layer before (D is symbolic)
    for k in range(1, count + 1):
        last = k == count
        whiten = draw(st.sampled_from(WHITENINGS)) if draw(st.integers(0, 5)) == 0 else None
        concat = None
        if draw(st.integers(1, new)) == 1:
            concat = (draw(st.integers(1, min(2, widest))), draw(st.sampled_from(CONCAT_ACTIVATIONS)))
        width_in = _widened(previous, concat[0]) if concat else previous
        tie = None
        # a weight can be reused when its shape fits: only hidden layers (j >= 2) have concrete shapes
        candidates = [(j, t) for j in range(2, k) for t in (False, True)
                      if (inputs[j - 1] if not t else str(drawn[j - 1].width)) == width_in]
        if candidates and draw(st.booleans()):
            tie = draw(st.sampled_from(candidates))
        if tie is not None:
            j, transposed = tie
            width = int(inputs[j - 1]) if transposed else drawn[j - 1].width
        else:
            width = draw(st.integers(1, widest))
        residual = width_in.isdigit() and int(width_in) == width and draw(st.booleans())
        probabilities = last and loss == "bce"   # the output must stay in (0, 1)
        if probabilities:
            activation = "sigmoid"
            residual = False
        elif last and loss.startswith("cross_entropy"):
            activation = None
        else:
            activation = draw(st.sampled_from(ACTIVATIONS))
        slope = draw(st.sampled_from(SLOPES)) if activation in ("leaky_relu", "elu") else ""
        scalars = SCALARS if activation in POSITIVE_ACTIVATIONS else SCALARS[:2]
        pools = POOLS[:1] if probabilities else POOLS
        mixes = [] if probabilities else [m for m in MIXES if m != "rotation" or width == 2]
        bias = draw(st.booleans()) or last
        drawn.append(Layer(width, activation, slope, bias=bias, residual=residual, tie=tie, whiten=whiten,
                           concat=concat, bias2=bias and draw(st.integers(1, new)) == 1,
                           scalar=_maybe(draw, scalars, new), pool=_maybe(draw, pools, new),
                           mix=_maybe(draw, mixes, new) if mixes else None))
        inputs.append(width_in)
        previous = str(width)
    return tuple(drawn)


def parameter_names(drawn: tuple[Layer, ...]) -> list[str]:
    """The layers' weights and biases (what the extra terms act on)."""
    names = []
    for k, layer in enumerate(drawn, start=1):
        if layer.concat:
            names.append(f"C{k}")
        if layer.tie is None:
            names.append(f"W{k}")
        if layer.bias:
            names.append(f"b{k}")
    return names


@st.composite
def extras(draw, params: list[str]) -> tuple[Extra, ...]:
    kind = st.sampled_from(EXTRAS)
    drawn = []
    for chosen in draw(st.lists(kind, max_size=2)):
        drawn.append(Extra(chosen, draw(st.sampled_from(params)),
                           draw(st.sampled_from(["1", "Rational(1, 10)", "Rational(-1, 3)"])),
                           draw(st.integers(0, VARIANTS.get(chosen, 1) - 1))))
    return tuple(drawn)


@st.composite
def networks(draw, most: int = 4, widest: int = 4, batch: int = 3, new: int = 4) -> Network:
    """A random network of at most ``most`` layers ``widest`` wide, N and D at most ``batch``; each later
    shape of a layer drawn once in ``new`` layers."""
    loss = draw(st.sampled_from(LOSSES))
    drawn = draw(layers(loss, most, widest, new))
    targets = draw(st.sampled_from(TARGETS[loss])) if loss in TARGETS else "simplex"
    return Network(rows=draw(st.booleans()), layers=drawn, loss=loss, reduction=draw(st.sampled_from(["mean", "sum"])),
                   extras=draw(extras(parameter_names(drawn))), input_in_wrt=draw(st.integers(0, 3)) == 0,
                   named=draw(st.booleans()), n=draw(st.integers(1, batch)), d=draw(st.integers(1, batch)),
                   seed=draw(st.integers(0, 2**16)), targets=targets)
