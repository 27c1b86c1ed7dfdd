"""Where the torch target calls torch's own fused kernels for a whole pattern of statements.

Two rewrites of a torch layer plan, after its statements are printed (and its shared products bound):

* :func:`fuse_products`: a product plus an array, ``Z = X @ W; Z += b`` or ``dX = dZv @ Wv.T + dZg @ Wg.T``,
  is one ``torch.addmm`` (BLAS adds into the product's output: no pass over it, no second array), as
  eager autograd's linear layer does;
* :func:`use_layer_norm_kernels`: a layer whose output is exactly layer norm, ``(X - mean) / sqrt(var +
  eps) ⊙ 1 gamma + 1 beta`` over the rows, is computed by ``native_layer_norm`` and differentiated by
  ``native_layer_norm_backward``, the kernels of ``torch.nn.functional.layer_norm``: one pass each way
  where the closed form takes a dozen elementwise passes (torch runs each as its own kernel; on CPU six
  to ten times eager's time, whatever their order). The closed form stays on the sheet and in the NumPy
  and JAX modules; the torch module is verified as every other (its forward against derive.truth, its
  backward by gradcheck). The match is exact: the layer norm is rebuilt from the layer's own symbols and
  compared with the declared output, so only that very expression is taken for it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import replace

from sympy import HadamardPower, HadamardProduct, MatrixSymbol, Number, OneMatrix, Rational

from ..core.layer import Layer
from .layer_plan import LayerPlan
from .module import Statement

__all__ = ["fuse_products", "layer_norm_of", "use_layer_norm_kernels"]


# --- a product plus an array: torch.addmm ---------------------------------------------------------

def fuse_products(statements: list[Statement], tensors: set[str], shapes: Mapping[str, str]) -> list[Statement]:
    """``statements`` with each product-plus-array written as ``torch.addmm``. ``tensors``: the names
    that hold tensors (an added size or number stays an addition: addmm takes a tensor); ``shapes``: the
    shape of each product the printer wrote and of each argument, by code. addmm broadcasts only the
    array it adds into, so a sum is fused only where both of its terms have one shape, known."""
    shape_of = {_key(code): shape for code, shape in shapes.items()}
    out: list[Statement] = []
    for statement in statements:
        previous = out[-1] if out else None
        if (previous is not None and statement.op == "+=" and previous.op == "=" and previous.target == statement.target
                and _product(previous.code) is not None and _is_tensor(statement.code, tensors)):
            left, right = _product(previous.code)   # Z = X @ W; Z += b: b broadcasts to Z, the product
            out[-1] = replace(previous, code=f"torch.addmm({statement.code}, {left}, {right})")
            continue
        out.append(_addmm_of_sum(statement, shape_of))
    return out


def _key(code: str) -> str:
    return ast.dump(ast.parse(code, mode="eval").body, annotate_fields=False)


def _product(code: str):
    """(left, right) of a statement's code that is one product ``left @ right``, else None."""
    tree = ast.parse(code, mode="eval").body
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.MatMult):
        return ast.unparse(tree.left), ast.unparse(tree.right)
    return None


def _is_tensor(code: str, tensors: set[str]) -> bool:
    tree = ast.parse(code, mode="eval").body
    return (isinstance(tree, ast.Name) and tree.id in tensors) or (
        isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.MatMult))


def _addmm_of_sum(statement: Statement, shape_of: Mapping[str, str]) -> Statement:
    """``P @ Q + R`` (or ``R + P @ Q``), R of the product's shape, as ``torch.addmm(R, P, Q)``."""
    if statement.op != "=" or not statement.code:
        return statement
    tree = ast.parse(statement.code, mode="eval").body
    if not (isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Add)):
        return statement
    for product, other in ((tree.right, tree.left), (tree.left, tree.right)):
        if not (isinstance(product, ast.BinOp) and isinstance(product.op, ast.MatMult)):
            continue
        shape = shape_of.get(ast.dump(product, annotate_fields=False))
        if shape is not None and shape_of.get(ast.dump(other, annotate_fields=False)) == shape:
            code = f"torch.addmm({ast.unparse(other)}, {ast.unparse(product.left)}, {ast.unparse(product.right)})"
            return replace(statement, code=code)
    return statement


# --- layer norm: torch's native kernels -------------------------------------------------------------

def layer_norm_expression(X: MatrixSymbol, gamma: MatrixSymbol, beta: MatrixSymbol, epsilon) -> object:
    """Layer norm of X's rows with gain gamma, bias beta and epsilon, in derive's matrix expressions."""
    rows, width = X.shape
    mean_rows = OneMatrix(width, 1) * OneMatrix(1, width) / width
    centred = X - X * mean_rows
    scale = HadamardPower(HadamardPower(centred, 2) * mean_rows + epsilon * OneMatrix(rows, width), Rational(-1, 2))
    return HadamardProduct(centred, scale, OneMatrix(rows, 1) * gamma) + OneMatrix(rows, 1) * beta


def layer_norm_of(g) -> tuple[MatrixSymbol, MatrixSymbol, MatrixSymbol, object] | None:
    """(X, gamma, beta, epsilon) when the layer's output is exactly :func:`layer_norm_expression` of its
    own arguments (rebuilt from each candidate and compared), else None."""
    if not isinstance(g, Layer) or len(g.arguments) != 3:
        return None
    epsilons = [n for n in g.output.atoms(Number) if n.is_positive]
    for X in g.arguments:
        rows_of = [s for s in g.arguments if s != X and s.shape == (1, X.shape[1])]
        for gamma in rows_of:
            for beta in rows_of:
                for epsilon in epsilons if beta != gamma else ():
                    if layer_norm_expression(X, gamma, beta, epsilon) == g.output:
                        return X, gamma, beta, epsilon
    return None


def use_layer_norm_kernels(plan: LayerPlan, g, printer, fresh) -> bool:
    """Rewrite ``plan`` (a torch layer plan) to torch's layer norm kernels where ``g`` is exactly a layer
    norm (:func:`layer_norm_of`); True if it did. ``fresh(base)``: an unused identifier."""
    match = layer_norm_of(g)
    if match is None:
        return False
    X, gamma, beta = (printer.doprint(s) for s in match[:3])
    epsilon = float(match[3])
    output, mean, rstd = printer.doprint(g.output_symbol), fresh("mean"), fresh("rstd")
    width = f"({X}.shape[1],)"
    plan.forward = [Statement(f"{output}, {mean}, {rstd}", f"torch.ops.aten.native_layer_norm({X}, {width}, "
                              f"{gamma}.reshape(-1), {beta}.reshape(-1), {epsilon!r})",
                              "layer norm by torch's kernel (the closed form: the sheet, the NumPy module)")]
    plan.output, plan.dims, plan.saved_values, plan.uses_dtype = output, [], [], False
    plan.saved = [X, mean, rstd, gamma]
    grads = dict(plan.grads)
    locals_ = [grads[repr(s.name)] for s in match[:3]]
    mask = ", ".join(str(local is not None) for local in locals_)
    targets = ", ".join(local or "_" for local in locals_)
    plan.backward = [Statement(targets, f"torch.ops.aten.native_layer_norm_backward({plan.upstream.local}, {X}, "
                               f"{width}, {mean}, {rstd}, {gamma}.reshape(-1), {gamma}.reshape(-1), ({mask}))",
                               "by torch's kernel: dX = R (G - mean(G) - Xhat mean(G Xhat)), G = dY gamma; "
                               "the bias argument only shapes dbeta (gamma's shape): beta is not saved")]
    plan.backward += [Statement(local, f"{local}.reshape(1, -1)", f"1 x {printer.doprint(match[0].shape[1])}")
                      for local in locals_[1:] if local is not None]
    plan.extra["kernels"] = "layer norm: native_layer_norm, native_layer_norm_backward"
    return True
