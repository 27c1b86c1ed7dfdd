"""derive.render.reuse.share_products: a product written twice over the same values is computed once.

The statements are run as written and as shared on the same random arrays, and must give the same
values (the written ones are the truth: each computes its products itself); products over a name
updated in place between their uses, or through an alias, must not be merged. The layers' modules are
checked to compute no product twice in their backward, and against autograd of independent layers.
"""

import ast

import numpy as np
import pytest

import derive
from derive.examples import layers
from derive.examples.attention_head import attention_head
from derive.render.module import Statement, load_module
from derive.render.reuse import share_products

from ..layer_references import draw, torch_reference


def _statements(*lines):
    out = []
    for line in lines:
        target, op, code = line.split(" ", 2)
        out.append(Statement(target, code, "", op))
    return out


def _run(statements, values):
    scope = dict(values)
    for s in statements:
        exec(f"{s.target} {s.op} {s.code}", {}, scope)  # noqa: S102 - the test's own statements
    return scope


def _products(statements):
    return [ast.dump(n) for s in statements for n in ast.walk(ast.parse(s.code, mode="eval"))
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]


def _fresh():
    taken = set()

    def fresh(base):
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name
    return fresh


SHAPES = {code: "4 x 4" for code in ("A @ B", "B @ C", "A @ (B @ C)", "dZ @ B", "dH @ B", "(A @ B) @ C")}

# (statements, how many products the shared statements write, names whose values are checked)
CASES = {
    "shared": (["x = 2 * (A @ B)", "y = (A @ B) @ C + A"], 2, ["x", "y"]),
    "nested, largest first": (["x = A @ (B @ C)", "y = (A @ (B @ C)) * A", "z = B @ C"], 2, ["x", "y", "z"]),
    "within one statement": (["x = A @ B + (A @ B).T"], 1, ["x"]),
    "updated in place between": (["x = A @ B", "A *= 2", "y = A @ B"], 2, ["x", "y"]),
    "through an alias": (["dZ = dH", "x = dH @ B", "dZ *= A", "y = dH @ B", "z = dZ @ B"], 3, ["x", "y", "z"]),
    "rebound between": (["x = A @ B", "A = C", "y = A @ B"], 2, ["x", "y"]),
    # an array finished in place is its own: sharing it would change the other readers' value
    "finished in place": (["u = A @ B", "u += C", "v = A @ B", "w = 2 * (A @ B)"], 2, ["u", "v", "w"]),
    # each finished in place after a statement that reads the product again: once a shared name is bound
    # between u's two lines, u must still own its product (a drawn network's backward aliased it)
    "finished in place, read in the update": (["u = A @ B", "u += (A @ B).sum(axis=1, keepdims=True)",
                                               "v = A @ B", "v += (A @ B).sum(axis=1, keepdims=True)",
                                               "w = A @ B", "w += (A @ B).sum(axis=1, keepdims=True)"],
                                              4, ["u", "v", "w"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_shared_statements_compute_the_same_values(case):
    lines, products, checked = CASES[case]
    written = _statements(*lines)
    shared = share_products(written, SHAPES, _fresh())
    rng = np.random.default_rng(0)
    values = {k: rng.standard_normal((4, 4)) for k in ("A", "B", "C", "dH")}
    truth = _run(written, {k: v.copy() for k, v in values.items()})
    got = _run(shared, {k: v.copy() for k, v in values.items()})
    for name in checked:
        np.testing.assert_allclose(got[name], truth[name], rtol=1e-12, err_msg=name)
    assert len(_products(shared)) == products


def test_a_shared_product_is_named_and_commented_with_its_shape():
    shared = share_products(_statements("x = 2 * (A @ B)", "y = (A @ B) @ C"), SHAPES, _fresh())
    assert shared[0] == Statement("A_B", "A @ B", "4 x 4, computed once for 2 uses")
    assert [s.code for s in shared[1:]] == ["2 * A_B", "A_B @ C"]


def _backward_products(source):
    tree = ast.parse(source)
    backward = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_backward")
    return [ast.dump(n) for n in ast.walk(backward) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]


BIG_ATTENTION = attention_head(16, 4)   # associated as at the bench's width: (X Wq)(X Wk)^T, P (X Wv)


@pytest.mark.parametrize("name", [*layers(), "attention at width 16"])
def test_no_layer_backward_computes_a_product_twice(name):
    torch = pytest.importorskip("torch")
    example = BIG_ATTENTION if name == "attention at width 16" else layers()[name]
    g = example.derive()
    source = derive.to_torch(g, "layer")    # verified: gradcheck against the declared layer
    products = _backward_products(source)
    assert len(products) == len(set(products))
    if name != "attention at width 16":
        return
    # the attention head's backward at this width shares dS (X Wk), dS^T (X Wq) and P^T dY
    assert "PT_dY = P.T @ dY" in source and "dS_X_Wk = dS @ (X @ Wk)" in source
    module = load_module(source)
    values = draw([*g.arguments, g.upstream], {"N": 6}, seed=1)
    tensors = [torch.tensor(values[k], dtype=torch.float64, requires_grad=True) for k in module.ARGS]
    upstream = torch.tensor(values[g.upstream.name], dtype=torch.float64)
    ours = torch.autograd.grad(module.Function.apply(*tensors), tensors, upstream)
    reference = [t.detach().clone().requires_grad_(True) for t in tensors]
    theirs = torch.autograd.grad(torch_reference("layer_attention_head")(**dict(zip(module.ARGS, reference))),
                                 reference, upstream)
    for key, a, b in zip(module.ARGS, ours, theirs):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11), key


def test_products_that_read_alike_get_identifiers_of_their_own():
    """A layer module's shared products are named by what they read: ``W @ A`` and ``W @ A.sum(...)`` read
    alike, and one identifier for both computed the second with the first's value."""
    from derive.render.identifiers import Identifiers
    ids = Identifiers()
    names = [ids.fresh("W2_W1_X"), ids.fresh("W2_W1_X"), ids("value", "W2_W1_X")]
    assert len(set(names)) == 3
