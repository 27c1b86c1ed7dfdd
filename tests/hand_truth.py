"""The independent truth for hand gradients: is a hand formula right, by evaluation alone?

It does not go through derive/check.py's comparison, its points or its dims. A text is read into
SymPy by derive's grammar (``derive.parse``: the names it may use are the checker's, what they mean
is computed here), a SymPy hand is taken as it is, and the formula is evaluated with
tests/evaluator.py at random points: the network's matrices at random values (targets as their
losses take them), named quantities at their values, named gradients dL/dQ at PyTorch autograd's
derivative of the loss with respect to Q, and the result compared with autograd's gradient of the
parameter. The dims are distinct odd primes from 7 on, other than the checker's (from 3 on) and
unable to hide a constant factor themselves.
"""

from __future__ import annotations

import numpy as np
from sympy import Basic, MatrixSymbol, S, primerange

from derive.checker.formula import HandShapeError
from derive.checker.grammar import parse
from derive.checker.meaning import to_sympy
from derive.checker.network import NetworkView
from derive.core.graph import topological_order
from derive.core.losses import BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from derive.core.symbols import Intermediate, LossGradient

from .evaluator import TorchOps, Walk, evaluate

SAME = 1e-8          # relative difference under which a hand formula is the gradient


def independent_dims(loss: Basic) -> dict:
    """Distinct odd primes from 7 on, skipping the sizes fixed in the shapes."""
    fixed = {int(d) for s in loss.atoms(MatrixSymbol) for d in s.shape if d.is_Integer}
    symbols = {d for s in loss.atoms(MatrixSymbol) for d in s.shape if not d.is_Integer}
    symbols |= {s for n in topological_order(loss) if isinstance(n, Loss) for s in n.scale.free_symbols}
    sizes = (p for p in primerange(7, 1000) if p not in fixed)
    return {s: next(sizes) for s in sorted(symbols, key=str)}


class HandTruth:
    """The values a hand formula for dL/d(param) can name, at ``points`` random points."""

    def __init__(self, loss: Basic, param: MatrixSymbol, names=None, points: int = 3, seed: int = 20):
        self.loss, self.param = loss, param
        self.net = NetworkView(loss, param, names, None)     # the names a text may use, nothing more
        self.dims = independent_dims(loss)
        quantities = {}
        for derivation in (self.net.g, self.net.everything):
            for f in (derivation.forward if derivation is not None else ()):
                quantities.setdefault(f.symbol.name, f.expression)
        leaves = sorted({s for s in topological_order(loss) if type(s) is MatrixSymbol}, key=lambda s: s.name)
        rng = np.random.default_rng(seed)
        self.values = [self._named_values(self._random_leaves(rng, leaves), quantities, leaves) for _ in range(points)]
        self.rename = {s: MatrixSymbol(f"{'d' if isinstance(s, LossGradient) else 'q'}:{s.name}", *s.shape)
                       for s in [*self.net.scope.symbols.values(), *self.net.scope.gradients.values()]
                       if isinstance(s, (Intermediate, LossGradient))}

    def _random_leaves(self, rng, leaves) -> dict:
        values = {s.name: rng.uniform(-1, 1, size=tuple(int(d.xreplace(self.dims)) for d in s.shape)) for s in leaves}
        for n in topological_order(self.loss):   # targets as the losses take them: in [0, 1], summing to 1
            if isinstance(n, BinaryCrossEntropy):
                values[n.target.name] = rng.uniform(0, 1, size=values[n.target.name].shape)
            if isinstance(n, SoftmaxCrossEntropy):
                target = rng.uniform(0.1, 1, size=values[n.target.name].shape)
                values[n.target.name] = target / target.sum(axis=n.axis, keepdims=True)
        return values

    def _named_values(self, values: dict, quantities: dict, leaves: list) -> dict:
        """Quantities by the NumPy evaluator; dL/dQ for every quantity and matrix by torch autograd."""
        import torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)    # matrices of a few dozen entries: threads only cost time
        try:
            tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
            # from the probabilities: dL/dp of a BCE of p = sigmoid(z) is a gradient a hand may name
            # (the points are far from the sigmoid's saturation)
            walk = Walk(TorchOps(), tensors, self.dims, logits=False)
            loss = walk.run(self.loss)
            wrt = {f"d:{s.name}": tensors[s.name] for s in leaves}
            wrt.update({f"d:{q}": walk.memo[e] for q, e in quantities.items() if e in walk.memo})
            grads = torch.autograd.grad(loss, list(wrt.values()), allow_unused=True)
        finally:
            torch.set_num_threads(threads)
        out = dict(values)
        out.update({k: np.zeros(tuple(t.shape)) if g is None else g.detach().numpy()
                    for (k, t), g in zip(wrt.items(), grads)})
        out.update({f"q:{q}": np.asarray(evaluate(e, values, self.dims), dtype=float) for q, e in quantities.items()})
        return out

    def sympy_form(self, hand) -> Basic:
        """A text read by derive's grammar in the checker's names, or a SymPy hand as it is."""
        if isinstance(hand, str):
            return to_sympy(parse(hand, self.net.scope), self.net.scope.softmax_axis)
        return hand

    def verdict(self, hand) -> str:
        """'right' or 'wrong' for a hand formula (text or SymPy), by evaluation alone."""
        try:
            expr = self.sympy_form(hand)
        except HandShapeError:
            return "wrong"                  # its operands do not fit together
        if expr.has(S.ComplexInfinity, S.NaN, S.Infinity, S.NegativeInfinity):
            return "wrong"                  # a division by 0
        expr = expr.xreplace(self.rename)
        shape = tuple(int(d.xreplace(self.dims)) for d in self.param.shape)
        for values in self.values:
            with np.errstate(all="ignore"):
                got = np.asarray(evaluate(expr, values, self.dims), dtype=float)
            want = values[f"d:{self.param.name}"]
            got = got.reshape(1, 1) if got.shape == () else got
            if got.shape != shape:
                return "wrong"
            scale = max(float(np.max(np.abs(want))), 1e-12)
            if not np.all(np.isfinite(got)) or float(np.max(np.abs(got - want))) > SAME * scale:
                return "wrong"
        return "right"
