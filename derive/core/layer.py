"""The derivation of a layer: ``vjp(output, inputs, params)`` and the :class:`Layer` value.

A layer maps inputs and parameters to a matrix Y; what backpropagation needs of it is the
vector-Jacobian product: for an upstream gradient G of Y's shape, the gradient of <G, Y> = tr(G^T Y)
with respect to each input and parameter. ``vjp`` derives exactly that scalar with the machinery of
``gradients``: the graph's root is the :class:`~.pairing.Pairing` of G with Y, whose rule hands Y the
gradient G itself, so the closed forms are written in G with no G^T Y product and no identity. The
declared scalar, what the truth expands and evaluates (``g.loss``, ``verify``, the numeric check),
is SymPy's own ``Trace(G.T*Y)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sympy import Basic, ImmutableMatrix, MatrixExpr, MatrixSymbol, Trace
from sympy.matrices import MatrixBase

from ..errors import InputIsParameter, InvalidLayerOutput, InvalidParameter, ParameterNotInLoss
from .canonical import canonical
from .derivation import Derivation, _check_params, _named_nodes
from .graph import Graph, topological_order
from .pairing import Pairing
from .symbols import LEAVES, Intermediate

__all__ = ["Layer", "vjp"]

DEFAULT_OUTPUT_NAME = "Y"


def vjp(output: MatrixExpr, inputs: Iterable[MatrixSymbol] = (), params: Iterable[MatrixSymbol] = (), *,
        names: Mapping | None = None, check: bool = True) -> Layer:
    """Derive the vector-Jacobian products of the layer ``output`` for each of ``inputs`` and ``params``.

    The upstream gradient is ``g.upstream``, a MatrixSymbol of the output's shape named ``dY`` (or
    "d" + the output's name where ``names`` names it); ``g[P]`` is the gradient of <G, Y> with
    respect to P. Inputs and params are both differentiated; they differ in what generated code does
    with them (a torch Module holds the params). Other matrices the output uses are constants.
    """
    output = _check_output(output)
    inputs, params = _as_list(inputs), _as_list(params)
    overlap = sorted({p.name for p in inputs if isinstance(p, MatrixSymbol)}
                     & {p.name for p in params if isinstance(p, MatrixSymbol)})
    if overlap:
        raise InputIsParameter(f"vjp: {', '.join(overlap)} is given both as an input and as a parameter; "
                               "a matrix is one or the other")
    wrt = _check_params(output, inputs + params)
    names = dict(names or {})
    output_name = _output_name(names, output)
    if output_name is None:
        output_name = _free_name(output, DEFAULT_OUTPUT_NAME, names)
        names[output_name] = output
    upstream = MatrixSymbol("d" + output_name, *output.shape)
    clash = [s for s in topological_order(output) if isinstance(s, MatrixSymbol) and s.name == upstream.name]
    if clash:
        raise InvalidParameter(f"vjp: the upstream gradient of {output_name} is named {upstream.name}, which is "
                               f"already a matrix of the layer; name the output otherwise in names=")
    memo: dict = {}
    root = Pairing(upstream, canonical(output, memo))
    graph = Graph.build(root, set(wrt))
    unused = [p for p in wrt if p not in graph.depends]
    if unused:
        raise ParameterNotInLoss(f"vjp: the output {output} does not depend on "
                                 f"{', '.join(p.name for p in unused)}; leave it out of inputs and params")
    g = Layer(Trace(upstream.T * output), tuple(wrt), graph, _named_nodes(names, graph, memo),
              output=output, upstream=upstream, inputs=tuple(inputs), layer_params=tuple(params))
    if check:
        g.check_numerically()
    return g


def _as_list(matrices) -> list:
    return [matrices] if isinstance(matrices, Basic) else list(matrices)


def _check_output(output) -> MatrixExpr:
    output = ImmutableMatrix(output) if isinstance(output, MatrixBase) else output
    if not isinstance(output, MatrixExpr):
        raise InvalidLayerOutput(f"vjp: the output {output!r} is a {type(output).__name__}, not a matrix expression; "
                                 "a layer's output is a matrix (a scalar is a 1 x 1 MatrixSymbol expression), and "
                                 "a scalar loss goes to derive.gradients")
    uses_matrices = isinstance(output, MatrixBase) and output.atoms(MatrixSymbol)
    if isinstance(output, LEAVES) and not uses_matrices:   # an explicit matrix of entries is computed
        raise InvalidLayerOutput(f"vjp: the output {output} is a matrix of the layer itself, not computed from "
                                 "its inputs and parameters")
    return output


def _output_name(names: Mapping, output: MatrixExpr) -> str | None:
    for key, value in names.items():
        name, expr = (key, value) if isinstance(key, str) else (value, key)
        if expr == output:
            return str(name)
    return None


def _free_name(output: MatrixExpr, base: str, names: Mapping) -> str:
    taken = {s.name for s in topological_order(output) if isinstance(s, MatrixSymbol)}
    taken |= {str(k if isinstance(k, str) else v) for k, v in names.items()}
    candidate, k = base, 1
    while candidate in taken or "d" + candidate in taken:
        k += 1
        candidate = f"{base}_{k}"
    return candidate


class Layer(Derivation):
    """A derivation of <G, Y> for a layer Y (build it with :func:`vjp`): a :class:`Derivation` whose
    ``loss`` is ``Trace(G.T*Y)``, plus the layer's ``output`` (as declared), ``output_symbol`` (its
    name in the forward pass), ``upstream`` (G), ``layer_inputs`` and ``layer_params``."""

    def __init__(self, loss, params, graph, given_names, *, output, upstream, inputs, layer_params):
        super().__init__(loss, params, graph, given_names)
        self.output = output
        self.upstream = upstream
        self.layer_inputs = inputs
        self.layer_params = layer_params
        self.output_symbol = self.root_compact.output
        if not isinstance(self.output_symbol, Intermediate):
            raise InvalidParameter(f"vjp: the output {output} could not be named in the forward pass")

    @property
    def arguments(self) -> tuple[MatrixSymbol, ...]:
        """The matrices the layer's forward takes: its inputs, the constants it uses (in order of use),
        then its parameters; every matrix but the upstream G."""
        constants = [s for s in self.inputs if s != self.upstream and s not in self.params]
        return (*self.layer_inputs, *constants, *self.layer_params)

    def __repr__(self):
        lines = [f"Layer {self.output_symbol.name} = {self.output}, upstream {self.upstream.name}"]
        lines += [f"  d{p.name} = {self.compact(p)}" for p in self.params]
        return "\n".join(lines)
