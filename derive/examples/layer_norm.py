"""Layer norm with gain gamma and bias beta: each row centred, scaled by 1/sqrt(var + eps), then
gamma and beta, as torch.nn.functional.layer_norm."""

from sympy import HadamardPower, HadamardProduct, MatrixSymbol, OneMatrix, Rational

from .layer import EPSILON, D, LayerExample, N, row_bias


def layer_norm() -> LayerExample:
    X, gamma, beta = MatrixSymbol("X", N, D), MatrixSymbol("gamma", 1, D), MatrixSymbol("beta", 1, D)
    mean_rows = OneMatrix(D, 1) * OneMatrix(1, D) / D          # X M: each row's mean, spread over the row
    C = X - X * mean_rows
    R = HadamardPower(HadamardPower(C, 2) * mean_rows + EPSILON * OneMatrix(N, D), Rational(-1, 2))
    Y = HadamardProduct(C, R, row_bias(gamma)) + row_bias(beta)
    return LayerExample("layer_norm", "Layer norm with gain gamma and bias beta", "beyond the notes", Y, (X,),
                        (gamma, beta), names={"C": C, "R": R, "Y": Y}, dims={N: 2, D: 3})


EXAMPLES = [layer_norm()]
