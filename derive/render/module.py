"""Verified NumPy code from a derivation: ``to_numpy(g, name) -> source of a Python module``.

The module has ``forward`` (caching what the backward needs), ``backward`` (the closed forms of the
derivation, one statement per upstream gradient that a parameter's gradient uses), ``loss_and_grads``,
``example_inputs`` (drawn where the loss is defined: :func:`derive.truth.domain`) and a
finite-difference self-check. Before the source is returned it is imported from the string, its
loss compared with the independent evaluation of the declared loss (:mod:`derive.truth`) and its
gradients with central finite differences in float64; a mismatch raises
:class:`~derive.errors.CodegenError` and nothing is returned.

Data flows one way: the derivation's forward definitions and compact gradients are printed with
:class:`~derive.printing.DeriveNumPyPrinter` into :class:`Statement` strings, and the template
``templates/module.py.j2`` only lays them out.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import count

import numpy as np
from sympy import (
    Basic,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    preorder_traversal,
)
from sympy.matrices.expressions.matexpr import MatrixElement

from ..core.algebra import mat_add, substitute
from ..core.derivation import Derivation
from ..core.dims import dimension_symbols, fit_dims, requirements, size_value
from ..core.graph import topological_order
from ..core.layer import Layer
from ..core.losses import SoftmaxCrossEntropy
from ..core.symbols import LossGradient
from ..core.truth import Draw, Program, domain
from ..errors import CodegenError
from . import runtime
from .hvp import HvpPlan, hvp_of, plan_hvp, verify_hvp
from .identifiers import Identifiers, safe_comment
from .numpy import DeriveNumPyPrinter
from .statement import Statement
from .templates import render as render_template
from .text import text
from .workspace import with_workspace

__all__ = ["ModulePlan", "Statement", "load_module", "to_numpy", "verify_module"]

# Default sizes of the dimensions in example_inputs: distinct, so a transposed product cannot pass.
DEFAULT_SIZES = (4, 3, 5, 2, 6, 7, 8)
# The verification's tolerance on the relative error against central differences (float64).
TOLERANCE = 1e-6
FD_STEP = 1e-5
# The differences' own rounding error, in units of eps |L| / FD_STEP (several times what it is): a
# loss of 1e8 rounds its differences to 1e-3 whatever the gradient, and a right module was refused.
FD_ROUNDING = 16
# ... and of the generated forward's loss against derive.truth's evaluation of the declared loss: the
# stable forms (logaddexp, tanh for sigmoid) and the textbook ones agree to rounding.
LOSS_TOLERANCE = 1e-9
# ... and of the step given a workspace against the step without: the same operations into other arrays.
WORKSPACE_TOLERANCE = 1e-12

# example_inputs draws each matrix from the loss's domain (derive.truth.Draw): NumPy source of
# {rows} and {cols}, and how it was drawn, for the line's comment.
EXAMPLE_DRAWS = {
    "normal": ("rng.standard_normal(({rows}, {cols}))", "standard normal"),
    "positive": ("rng.uniform(0.5, 1.5, size=({rows}, {cols}))", "positive: under a log or a root"),
    "probability": ("rng.uniform(0.05, 0.95, size=({rows}, {cols}))", "probabilities"),
    "nonnegative": ("rng.uniform(0.0, 1.0, size=({rows}, {cols}))", "non-negative targets, need not sum to 1"),
    "invertible": ("np.eye({rows}) + rng.uniform(-0.5, 0.5, size=({rows}, {cols})) / {n}",
                   "I + E, |E_ij| < 1/(2n): det > 0, condition number < 3"),
    "invertible positive": ("np.eye({rows}) + rng.uniform(0.05, 0.5, size=({rows}, {cols})) / {n}",
                            "I + E, 0 < E_ij < 1/(2n): positive entries, det > 0, condition number < 3"),
    "nonzero": ("rng.choice([-1.0, 1.0], size=({rows}, {cols})) * rng.uniform(0.5, 1.5, size=({rows}, {cols}))",
                "a divisor: 0.5 < |x| < 1.5"),
}


@dataclass(frozen=True)
class Input:
    """A parameter or batch entry: its dict key, local name, shape comment and example initialiser."""

    key: str          # the user's name, written with repr() as a dict key
    local: str
    shape: str
    example: str
    note: str = ""


@dataclass
class ModulePlan:
    """Everything the template lays out, already printed to strings."""

    name: str
    title: str
    loss_text: str
    params: list[Input]
    batch: list[Input]
    dims: list[Statement]                 # N = X.shape[0]
    default_dims: list[tuple[str, str, int]]   # (key, local, size)
    forward: list[Statement]
    loss: Statement
    cache: list[tuple[str, str]]          # (key, local), what backward reads
    backward: list[Statement]
    grads: list[tuple[str, str]]          # (param key, local gradient)
    helpers: list[str] = field(default_factory=list)
    imports_scipy: bool = False
    threads: bool = False                 # blockwise helpers: THREADS, BLOCK and a thread pool
    workspace: bool = False               # forward and backward take workspace= (derive.render.workspace)
    hvp: HvpPlan | None = None            # hvp(params, batch, directions), with hvp=True


def to_numpy(g: Derivation, name: str, *, dims: Mapping | None = None, verify: bool = True,
             workspace: bool = False, hvp: bool = False) -> str:
    """The source of a NumPy module computing the loss and the gradients of ``g``, checked first.

    ``name`` names the network in the module's header. ``dims`` sets the sizes example_inputs uses by
    default (``{N: 2, "D": 3}``); the others get small distinct sizes. With ``verify`` (the default)
    the module is imported from the string and its gradients compared with central finite
    differences at random float64 points: a relative error over 1e-6 raises CodegenError. With
    ``hvp`` the module also defines ``hvp(params, batch, directions)``, checked against differences
    of its own gradient and of the declared loss (:mod:`derive.render.hvp`).

    With ``workspace`` the module also has a ``Workspace`` class, and ``forward``, ``backward`` and
    ``loss_and_grads`` take ``workspace=``: a call given one writes its arrays into those of the
    previous call given it (for a step called in a loop), so its results alias that call's and are
    overwritten by the next; with ``hvp`` too, ``hvp`` takes ``workspace=`` alike. The verification then
    also runs the step (and the hvp) twice with a workspace and requires the results without one.
    """
    if not isinstance(g, Derivation):
        raise CodegenError(f"to_numpy expects a Derivation from derive.gradients, got {type(g).__name__}")
    if isinstance(g, Layer):  # derive.vjp: its module's backward takes the upstream (derive.to_numpy dispatches)
        raise CodegenError(f"{name} is a layer (derive.vjp): write its module with derive.to_numpy, which "
                           "dispatches to derive.render.layer_numpy")
    plan = plan_module(g, name, dims or {}, hvp=hvp, check_hvp=not verify)
    if workspace:
        plan = reusing_buffers(plan)
    source = render(plan)
    if verify:
        verify_module(source, name, loss=g.loss)
        if hvp:
            verify_hvp(load_module(source, name), name, g.loss)
    return source


def reusing_buffers(plan: ModulePlan) -> ModulePlan:
    """The plan with a workspace: forward's, backward's and hvp's fresh arrays written into reused buffers."""
    def into(statement: Statement, code: str) -> Statement:
        return replace(statement, code=code)
    second = plan.hvp and replace(plan.hvp, statements=with_workspace(plan.hvp.statements, into))
    return replace(plan, forward=with_workspace(plan.forward, into), backward=with_workspace(plan.backward, into),
                   hvp=second, helpers=[*plan.helpers, runtime.source("Workspace")], workspace=True)


# --- planning: every expression printed to a string ------------------------------------------------

def plan_module(g: Derivation, name: str, dims: Mapping, *, hvp: bool = False,
                check_hvp: bool = True) -> ModulePlan:
    ids = Identifiers()
    inputs = list(g.inputs)
    for symbol in inputs:
        ids("value", symbol.name)
    for entry in g.forward:
        ids("value", entry.symbol.name)
    printer = DeriveNumPyPrinter(ids, {f.symbol: f.definition for f in g.forward}, dtype="dtype")
    printer.parameters = frozenset(g.params)   # _in_place_split: which terms read only the weights
    dim_symbols = sorted(dimension_symbols(g.root), key=str)
    sizes = _default_sizes(dim_symbols, dims, g.root)
    draws = domain(g.loss)

    params = [_input(s, printer, draws.get(s, Draw("normal"))) for s in g.params]
    batch = [_input(s, printer, draws.get(s, Draw("normal"))) for s in inputs if s not in g.params]
    forward = [*_target_checks(g, printer),
               *[line for f in g.forward
                 for line in _assign(printer.doprint(f.symbol), f.definition, _shape(f.symbol, printer), printer)]]
    loss = _loss_statement(g, printer)
    identities = _identity_gradients(g)
    backward, grads = _backward(g, printer, ids, identities)
    # with hvp, the core's own check of the HVP stands in for the module's when that is skipped
    second = plan_hvp(g, hvp_of(g, check=check_hvp), printer, ids, _assign, _shape, identities) if hvp else None
    reads = [*backward, *(second.statements if second else [])]
    code = " ".join(s.code for s in [*forward, loss, *reads])
    batch_first = [s for s in inputs if s not in g.params] + [s for s in inputs if s in g.params]
    dim_lines = [_bind_dim(d, batch_first, printer) for d in dim_symbols if _mentions(code, printer.doprint(d))]
    if printer.uses_dtype:
        # constants (I) are made in the parameters' dtype: float32 in, float32 out
        dim_lines.append(Statement("dtype", f"np.result_type({', '.join(p.local for p in params)})",
                                   "the parameters' dtype"))
    cache = _cache(g, reads, [*dim_symbols, *inputs], printer)
    return ModulePlan(
        name=safe_comment(name), title=safe_docstring(name), loss_text=safe_docstring(text(g.loss)),
        params=params, batch=batch, dims=dim_lines,
        default_dims=[(repr(str(d)), printer.doprint(d), sizes[d]) for d in dim_symbols],
        forward=forward, loss=loss, cache=cache, backward=backward, grads=grads,
        helpers=[runtime.source(h) for h in sorted(printer.helpers) if h in runtime.HELPERS],
        imports_scipy="scipy" in printer.helpers, threads="threads" in printer.helpers, hvp=second)


def safe_docstring(text: str) -> str:
    """``text`` as one line inside the module's docstring: a user's name holding triple quotes would
    otherwise close the docstring and run as code when the module is imported (and to_numpy imports it)."""
    return safe_comment(text).replace("\\", "\\\\").replace('"', '\\"')


def _default_sizes(dim_symbols, dims: Mapping, expr) -> dict:
    """The given sizes, the others DEFAULT_SIZES, raised where a slice or block of ``expr`` needs more."""
    given = {str(k): size_value(k, v) for k, v in dims.items()}
    default = {d: DEFAULT_SIZES[k % len(DEFAULT_SIZES)] for k, d in enumerate(dim_symbols)}

    def preferred(symbol, least, taken):
        return default[symbol] if default[symbol] >= least else next(n for n in count(least) if n not in taken)

    return fit_dims(dim_symbols, requirements(expr), preferred,
                    {d: given[str(d)] for d in dim_symbols if str(d) in given})


def _shape(matrix, printer) -> str:
    if not isinstance(matrix, MatrixExpr):
        return "scalar"
    return safe_comment(f"{printer.doprint(matrix.rows)} x {printer.doprint(matrix.cols)}")


def _target_checks(g: Derivation, printer) -> list[Statement]:
    """A cross-entropy declared with targets_sum_to_one=True refuses targets that break it."""
    return [Statement("", printer.target_check(node), "each example's target sums to 1 (declared)")
            for node in topological_order(g.root) if isinstance(node, SoftmaxCrossEntropy) and node.targets_sum_to_one]


def _input(symbol: MatrixSymbol, printer, draw: Draw) -> Input:
    """The parameter or batch entry, with example values drawn from the loss's domain."""
    rows, cols = (printer.doprint(d) for d in symbol.shape)
    key, local, shape = repr(symbol.name), printer.doprint(symbol), _shape(symbol, printer)
    if draw.kind == "simplex":
        # one-hot targets: a vertex of the simplex, as a classifier's labels are
        classes, examples = (rows, cols) if draw.axis == 0 else (cols, rows)
        picks = f"np.eye({classes})[rng.integers(0, {classes}, size={examples})]"
        along = "column" if draw.axis == 0 else "row"
        return Input(key, local, shape, picks + (".T" if draw.axis == 0 else ""),
                     safe_comment(f"{shape}, one-hot: each {along} sums to 1"))
    code, how = EXAMPLE_DRAWS.get(draw.kind, EXAMPLE_DRAWS["normal"])
    n = rows if re.fullmatch(r"\w+", rows) else f"({rows})"
    return Input(key, local, shape, code.format(rows=rows, cols=cols, n=n), safe_comment(f"{shape}, {how}"))


def _bind_dim(dim, inputs, printer) -> Statement:
    for symbol in inputs:
        for axis, size in enumerate(symbol.shape):
            if size == dim:
                return Statement(printer.doprint(dim), f"{printer.doprint(symbol)}.shape[{axis}]",
                                 safe_comment(f"from {symbol.name}"))
    raise CodegenError(f"the dimension {dim} is not the size of any input's axis, so the generated code cannot "
                       "read it from the arrays; give some matrix that size")


def _loss_statement(g: Derivation, printer) -> Statement:
    compact = g.root_compact
    if isinstance(compact, MatrixExpr):
        compact = MatrixElement(compact, 0, 0)  # a 1 x 1 loss, read as a scalar
    return Statement("loss", printer.doprint(compact), "scalar")


def _backward(g: Derivation, printer, ids, identities: dict) -> tuple[list[Statement], list[tuple[str, str]]]:
    """One statement per upstream gradient some parameter's gradient uses, loss side first.

    An upstream gradient dL/dQ depends only on those of Q's consumers, which come later in the
    forward pass, so reverse forward order is a valid order; each parameter's gradient is written
    right after the last upstream gradient it reads.
    """
    position = {f.symbol.name: k for k, f in enumerate(g.forward)}
    symbols = {f.symbol.name: f.symbol for f in g.forward}
    upstream = {p: g.upstream_gradients(p) for p in g.params}
    needed = {s.name: substitute(g.gradient_of(s.name), identities) for p in g.params for s in upstream[p]
              if s not in identities}
    compact = {p: substitute(g.compact(p), identities) for p in g.params}
    order = sorted(needed, key=lambda n: -position[n])
    grads_at: dict[int, list] = {}
    for param in g.params:
        # right after the last upstream gradient it needs (the one nearest the parameter)
        grads_at.setdefault(min((position[s.name] for s in upstream[param] if s not in identities),
                                 default=len(g.forward)), []).append(param)
    reusable = _reusable(needed, list(compact.values()), printer)
    statements, grads = [], []

    def emit_grads(at: int):
        for param in grads_at.get(at, []):
            local = ids("adjoint", param.name)
            # handed to the caller: the parameter's shape, and an array of its own
            statements.extend(_assign(local, compact[param], _shape(param, printer), printer, reusable,
                                      writable=True))
            grads.append((repr(param.name), local))

    emit_grads(len(g.forward))
    for name in order:
        symbol = symbols[name]
        statements.extend(_assign(ids("adjoint", name), needed[name], _shape(symbol, printer), printer, reusable))
        emit_grads(position[name])
    return statements, grads


def _identity_gradients(g: Derivation) -> dict[LossGradient, Basic]:
    """The named upstream gradients that are an identity (c I: a trace's dL/dM), to be written into what
    reads them: ``W @ dZ + W @ dZ.T`` with dZ = I folds to ``2 W`` instead of two products with an
    H x H ``np.eye`` (a weight decay tr(W^T W) cost two extra matrix products a step)."""
    upstream = {s for p in g.params for s in g.upstream_gradients(p)}
    return {s: g.gradient_of(s.name) for s in upstream if _is_identity(g.gradient_of(s.name))}


def _is_identity(expr: Basic) -> bool:
    """I, or a number times I."""
    if isinstance(expr, Identity):
        return True
    return (isinstance(expr, MatMul) and sum(isinstance(a, Identity) for a in expr.args) == 1
            and all(isinstance(a, Identity) or a.is_number for a in expr.args))


def _reusable(needed: dict[str, Basic], param_grads: list[Basic], printer) -> set[str]:
    """Upstream gradients read exactly once, held in an array of their own: the one statement that
    reads them may finish its work in that array (``dZ = dH; dZ *= mask``) instead of a new one."""
    readers: Counter = Counter()
    for expr in [*needed.values(), *param_grads]:
        readers.update(node.name for node in preorder_traversal(expr) if isinstance(node, LossGradient))
    return {name for name, expr in needed.items()
            if readers[name] == 1 and (_is_full_product(expr, expr.shape, printer)
                                       or _in_place_split(expr, printer)[0] is not None)}


def _assign(target: str, expr: Basic, shape: str, printer, reusable: set[str] = frozenset(),
            writable: bool = False) -> list[Statement]:
    """``target = expr`` at expr's declared shape (``writable``: never a read-only view); a sum whose
    one term makes a fresh array, or a product times a mask, finished in place.

    ``Z = X @ W; Z += b`` and ``dZ = dH @ W.T; dZ *= Z > 0`` allocate one array where the single
    expressions allocate two and pass over them twice; ``R = A @ V; R += H @ U; R += c`` keeps one sum
    instead of a fresh array per ``+``. On big layers fresh arrays (their page faults) are most of the
    time spent outside the matrix products: a tangent step or an HVP sums two or three such terms.
    """
    fresh, rest, op = _in_place_split(expr, printer, reusable)
    if fresh is None:
        return [Statement(target, printer.full(expr, writable), shape)]
    first = Statement(target, printer.doprint(fresh), shape)
    if op == "+=":
        return [first, *(Statement(target, printer.doprint(term), shape, op) for term in rest)]
    fused = printer.times_in_place(target, rest)
    if fused is not None:
        return [first, Statement(target, fused[1], shape, fused[0])]
    return [first, Statement(target, printer.doprint(rest), shape, op)]


def _in_place_split(expr: Basic, printer, reusable: set[str] = frozenset()):
    """(a term that is a fresh full-size array, the rest, "+=" or "*="): for a sum, its first fresh
    term (a full-size matrix product, else a full-size Hadamard product) and the other terms one by
    one, the broadcast ones (biases) together last; for a Hadamard product, a full-size product (or a
    reusable upstream gradient) and the other factors."""
    if isinstance(expr, MatAdd):
        # torch fuses a product plus an array of its shape into one addmm: there, only biases are split off
        every_term = getattr(printer, "adds_terms_in_place", False)
        # a term that reads the data first: the sum takes its first term's dtype, and float64 data with
        # float32 weights must keep a weight decay's sum float64, as the single expression was
        params = getattr(printer, "parameters", frozenset())
        order = sorted(range(len(expr.args)), key=lambda k: expr.args[k].free_symbols <= params)
        for fresh in (_is_full_product, _is_full_hadamard) if every_term else (_is_full_product,):
            for k in order:
                arg = expr.args[k]
                if fresh(arg, expr.shape, printer):
                    others = expr.args[:k] + expr.args[k + 1:]
                    broadcast = [o for o in others if _broadcast_term(o, printer)]
                    full = [o for o in others if not _broadcast_term(o, printer)]
                    if full and not every_term:
                        return None, None, None
                    return arg, [*full, *([mat_add(*broadcast)] if broadcast else [])], "+="
        return None, None, None
    if not isinstance(expr, HadamardProduct):
        return None, None, None
    for k, arg in enumerate(expr.args):
        if (isinstance(arg, LossGradient) and arg.name in reusable) or _is_full_product(arg, expr.shape, printer):
            others = expr.args[:k] + expr.args[k + 1:]
            return arg, others[0] if len(others) == 1 else HadamardProduct(*others), "*="
    return None, None, None


def _is_full_hadamard(expr, shape, printer) -> bool:
    """A Hadamard product printed at the result's full shape as ``a * b``: NumPy makes it a fresh array
    (a fused helper such as ``gelu_prime(Z, times=G)`` may write into its operand: not one of these)."""
    if not (isinstance(expr, HadamardProduct) and expr.shape == shape and printer.layout_of(expr).full):
        return False
    tree = ast.parse(printer.doprint(expr), mode="eval").body
    return isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Mult)


def _is_full_product(expr, shape, printer) -> bool:
    """A product of matrices (no ones-matrix sums) printed at the result's full shape: a fresh array."""
    return (isinstance(expr, MatMul) and expr.shape == shape
            and all(isinstance(a, MatrixExpr) and not isinstance(a, OneMatrix) for a in expr.args)
            and printer.layout_of(expr).full)


def _broadcast_term(expr, printer) -> bool:
    """A bias 1 b (or b 1^T), or any term that is not a product: safe to add in place."""
    return not isinstance(expr, MatMul) or not printer.layout_of(expr).full


def _cache(g: Derivation, backward, inputs, printer) -> list[tuple[str, str]]:
    """The arrays the backward statements read: cached activations and inputs (by local name)."""
    read = {s.code for s in backward}
    text = " ".join(read)
    candidates = [*inputs, *(f.symbol for f in g.forward)]
    out = [("'dtype'", "dtype")] if printer.uses_dtype and _mentions(text, "dtype") else []
    for symbol in candidates:
        local = printer.doprint(symbol)
        if _mentions(text, local) and local not in [c[1] for c in out]:
            out.append((repr(local), local))  # keyed by identifier: a dim and a matrix may share a name
    return out


def _mentions(text: str, identifier: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(identifier)}(?!\w)", text) is not None


# --- rendering ---------------------------------------------------------------------------------

def render(plan: ModulePlan) -> str:
    return render_template("module.py.j2", plan=plan)


# --- verification ------------------------------------------------------------------------------

def load_module(source: str, name: str = "derive_generated"):
    """Import ``source`` as a fresh module (never registered in sys.modules)."""
    spec = importlib.util.spec_from_loader(f"derive_generated_{abs(hash(name))}", loader=None)
    module = importlib.util.module_from_spec(spec)
    # the source is our own renderer's output (user names only ever appear mangled or in repr())
    exec(compile(source, f"<derive module for {safe_comment(name)}>", "exec"), module.__dict__)  # noqa: S102
    return module


def verify_module(source: str, name: str, *, points: int = 2, seed: int = 0, loss: Basic | None = None) -> float:
    """Compare the module's gradients with central finite differences; the worst relative error.

    Given the declared ``loss``, the module's forward is also compared with :mod:`derive.truth`'s
    evaluation of it: a forward printed wrong, with a backward consistent with it, passes the
    differences but not this.
    """
    try:
        module = load_module(source, name)
    except Exception as error:  # the printer wrote code that does not even import: say where
        raise CodegenError(f"the generated module for {name} does not import: {error}\n"
                           + traceback.format_exc(limit=1)) from error
    truth = Program([loss], module.DEFAULT_DIMS) if loss is not None else None
    rng = np.random.default_rng(seed)
    workspace = module.Workspace() if hasattr(module, "Workspace") else None
    worst = 0.0
    for _ in range(points):
        params, batch = module.example_inputs(rng)
        worst = max(worst, _check_point(module, name, params, batch))
        if truth is not None:
            _check_loss(module, name, truth, params, batch)
        if workspace is not None:  # from the second point on, into the first one's arrays
            _check_workspace(module, name, workspace, params, batch)
    return worst


def _check_workspace(module, name: str, workspace, params: dict, batch: dict) -> None:
    """The step given the workspace gives what it gives without one (checked above), to rounding."""
    loss, grads = module.loss_and_grads(params, batch)
    reused_loss, reused = module.loss_and_grads(params, batch, workspace=workspace)
    pairs = [("the loss", loss, reused_loss), *((f"d{k}", grads[k], reused[k]) for k in grads)]
    if hasattr(module, "hvp"):  # its own buffers, and forward's again, reused
        rng = np.random.default_rng(len(params))
        directions = {key: rng.standard_normal(np.shape(value)) for key, value in params.items()}
        products = module.hvp(params, batch, directions)
        again = module.hvp(params, batch, directions, workspace=workspace)
        pairs += [(f"the hvp of {k}", products[k], again[k]) for k in products]
    for key, expected, found in pairs:
        expected, found = np.asarray(expected), np.asarray(found)
        scale = max(float(np.max(np.abs(expected), initial=0)), 1e-300)
        if found.shape != expected.shape or not np.max(np.abs(found - expected), initial=0) <= WORKSPACE_TOLERANCE * scale:
            raise CodegenError(f"the generated step of {name} given a workspace gives {key} unlike the step without "
                               f"one: {found!r} against {expected!r}")


def _check_loss(module, name: str, truth: Program, params: dict, batch: dict) -> None:
    generated = float(module.forward(params, batch)[0])
    expected = float(np.asarray(truth.run({**batch, **params})[0]).reshape(-1)[0])
    if not abs(generated - expected) <= LOSS_TOLERANCE * max(abs(generated), abs(expected)):
        raise CodegenError(
            f"the generated forward of {name} gives the loss {generated!r} at its example inputs, but the "
            f"independent evaluation of the declared loss (derive.truth) gives {expected!r}")


def _check_point(module, name: str, params: dict, batch: dict) -> float:
    try:
        loss, grads = module.loss_and_grads(params, batch)
    except Exception as error:
        raise CodegenError(f"the generated code for {name} fails on example inputs: {type(error).__name__}: "
                           f"{error}") from error
    if set(grads) != set(params):
        raise CodegenError(f"the generated code for {name} returns gradients for {sorted(grads)}, "
                           f"not for the parameters {sorted(params)}")
    if not math.isfinite(float(loss)):
        raise CodegenError(f"the generated code for {name} gives a non-finite loss {loss!r} on example inputs")
    worst = 0.0
    for key, value in params.items():
        grad = np.asarray(grads[key])
        if grad.shape != value.shape:
            raise CodegenError(f"the generated gradient of {key} in {name} has shape {grad.shape}, but {key} "
                               f"has shape {value.shape}")
        numeric = central_differences(lambda: float(module.forward(params, batch)[0]), value)
        scale = max(float(np.max(np.abs(numeric), initial=0)), float(np.max(np.abs(grad), initial=0)), 1e-8)
        error = float(np.max(np.abs(numeric - grad), initial=0)) / scale
        rounding = FD_ROUNDING * np.finfo(float).eps * abs(float(loss)) / FD_STEP / scale
        if not error < TOLERANCE + rounding:
            at = np.unravel_index(int(np.argmax(np.abs(numeric - grad))), grad.shape)
            raise CodegenError(
                f"the generated gradient of {key} in {name} disagrees with central finite differences: entry "
                f"{tuple(int(i) for i in at)} is {grad[at]!r}, the differences give {numeric[at]!r} "
                f"(relative error {error:.2e} > {TOLERANCE + rounding:.2g})")
        worst = max(worst, error)
    return worst


def central_differences(loss, value: np.ndarray, step: float = FD_STEP) -> np.ndarray:
    """d loss / d value by (L(v + h) - L(v - h)) / 2h, entry by entry, ``value`` changed in place."""
    numeric = np.zeros_like(value, dtype=float)
    for index in np.ndindex(value.shape):
        saved = value[index]
        value[index] = saved + step
        up = loss()
        value[index] = saved - step
        down = loss()
        value[index] = saved
        numeric[index] = (up - down) / (2 * step)
    return numeric
