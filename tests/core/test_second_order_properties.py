"""Property test: the HVPs of random networks (tests/networks.py) equal PyTorch autograd's.

For each drawn network, ``g.hvp`` along a random direction of every parameter (with derive's own check
against second differences of the loss) is evaluated by the test evaluator and compared with
``torch.autograd.functional.hvp`` of the same loss evaluated with torch ops. A modest number of draws:
the second-order pass runs on every spelling the generator makes (blocks, explicit matrices, scalars,
ones-matrix reductions, inverses and powers), the table of networks in test_second_order.py does the rest.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings
from sympy import MatrixSymbol

import derive

from ..evaluator import evaluate, torch_hvp
from ..networks import networks

DRAWN = max(5, settings().max_examples // 50)   # 20 at the ci profile
EXACT = 1e-8


@settings(max_examples=DRAWN)
@given(net=networks(most=3, widest=3, batch=3))
def test_the_hvp_of_a_drawn_network_equals_autograd(net):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    note(f"network declaration:{net!r}")
    namespace = net.build()
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])
    dims = {namespace["N"]: net.n, namespace["D"]: net.d}
    values = net.values(namespace)
    rng = np.random.default_rng(net.seed)
    directions = {p: MatrixSymbol(f"V_{p.name}", *p.shape) for p in g.params}
    along = {p.name: rng.standard_normal(values[p.name].shape) for p in g.params}
    hvp = g.hvp(directions)
    params = {p.name: values[p.name] for p in g.params}
    batch = {k: v for k, v in values.items() if k not in params}
    truth = torch_hvp(namespace["loss"], params, batch, dims, along)
    point = {**values, **{directions[p].name: along[p.name] for p in g.params}}
    for p in g.params:
        closed = np.asarray(evaluate(hvp[p], point, dims), dtype=float)
        closed = np.broadcast_to(closed, truth[p.name].shape)
        scale = max(1.0, float(np.max(np.abs(truth[p.name]))))
        error = float(np.max(np.abs(closed - truth[p.name]))) / scale
        assert error <= EXACT, f"HVP of {p.name}: closed form\n{closed}\nautograd\n{truth[p.name]}\n({error:.1e})"
