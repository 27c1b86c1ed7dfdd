"""tests/evaluator.py's central differences, which reuse the values of the nodes an entry does not
move, give bit for bit the differences of evaluating the whole loss afresh at every shifted point."""

import numpy as np
from hypothesis import given, settings

from .evaluator import central_differences, evaluate
from .networks import networks


def afresh(loss, values: dict, dims: dict, name: str, step: float = 1e-6) -> np.ndarray:
    base, grad = values[name], np.zeros_like(values[name])
    for index in np.ndindex(base.shape):
        shifted = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[index] += sign * step
            shifted.append(float(evaluate(loss, {**values, name: moved}, dims)))
        grad[index] = (shifted[0] - shifted[1]) / (2 * step)
    return grad


@settings(max_examples=10)
@given(net=networks(most=3, widest=2, batch=2))
def test_differences_from_the_unmoved_nodes_are_those_of_fresh_evaluations(net):
    namespace = net.build()
    dims, values = {namespace["N"]: net.n, namespace["D"]: net.d}, net.values(namespace)
    for param in namespace["wrt"]:
        reused = central_differences(namespace["loss"], values, dims, param.name)
        np.testing.assert_array_equal(reused, afresh(namespace["loss"], values, dims, param.name), err_msg=param.name)
