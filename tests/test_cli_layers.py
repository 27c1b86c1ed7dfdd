"""The derive command with layers and frameworks: ``derive code NET --target numpy|torch|jax``, layer
files (``output``, ``inputs``, ``params``), and each module's own ``python module.py`` check."""

import subprocess
import sys
import textwrap

import pytest

from derive import cli
from derive.render.templates import GENERATED_MARK

LAYER_FILE = textwrap.dedent("""\
    from sympy import MatrixSymbol, OneMatrix, Symbol
    from derive import tanh
    N = Symbol("N", integer=True, positive=True)
    X, W, b = MatrixSymbol("X", N, 2), MatrixSymbol("W", 2, 3), MatrixSymbol("b", 1, 3)
    output = tanh(X * W + OneMatrix(N, 1) * b)
    inputs = [X]
    params = [W, b]
    names = {"Z": X * W + OneMatrix(N, 1) * b}
    title = "A tanh layer"
""")


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TARGETS = [
    # (network, target, file written)
    ("layer_gelu_dense", "numpy", "layer_gelu_dense.py"),
    ("layer_gelu_dense", "torch", "layer_gelu_dense_torch.py"),
    ("layer_gelu_dense", "jax", "layer_gelu_dense_jax.py"),
    ("seed_000_bce", "torch", "seed_000_bce_torch.py"),
    ("seed_000_bce", "jax", "seed_000_bce_jax.py"),
]


@pytest.mark.parametrize("net, target, written", TARGETS)
def test_code_writes_the_target_module_and_it_checks_itself(net, target, written, tmp_path, capsys):
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[target])
    code, out, _ = run(["code", net, "--target", target, "--output-dir", str(tmp_path)], capsys)
    assert code == 0 and written in out
    path = tmp_path / written
    assert GENERATED_MARK in path.read_text().splitlines()[0]
    check = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("target, written, backward", [
    ("numpy", "tanh_layer.py", "def backward(cache, dY)"),
    ("torch", "tanh_layer_torch.py", "def backward(ctx, dY)"),
])
def test_a_layer_file_is_derived_with_vjp(target, written, backward, tmp_path, capsys):
    if target == "torch":  # without torch the NumPy row still derives the layer file
        pytest.importorskip("torch")
    (tmp_path / "nets").mkdir()  # apart from the output: the NumPy module is named like the file
    network = tmp_path / "nets" / "tanh_layer.py"
    network.write_text(LAYER_FILE)
    code, _, _ = run(["code", str(network), "--target", target, "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    source = (tmp_path / written).read_text()
    assert "ARGS = ('X', 'W', 'b',)" in source and backward in source
    code, _, _ = run(["sheet", str(network), "--output-dir", str(tmp_path)], capsys)
    assert code == 0 and r"\left\langle dY, Y \right\rangle" in (tmp_path / "tanh_layer.tex").read_text()


BAD_LAYER_FILES = [
    # (the line of LAYER_FILE replaced, its replacement, words of the one-line message)
    ("params = [W, b]", "params = [W, b, X]", "X is given both as an input and as a parameter"),
    ("inputs = [X]", "inputs = 3", "inputs must be a MatrixSymbol or a list of them, got int"),
    ("params = [W, b]", "params = {W: 1}", "params must be a MatrixSymbol or a list of them, got dict"),
]


@pytest.mark.parametrize("line, replacement, words", BAD_LAYER_FILES)
def test_a_layer_file_with_a_bad_layer_is_refused_in_one_line(line, replacement, words, tmp_path, capsys):
    network = tmp_path / "bad_layer.py"
    network.write_text(LAYER_FILE.replace(line, replacement))
    code, _, err = run(["code", str(network), "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad_layer.py.tmp").exists()


def test_list_names_the_layers(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "layer_norm" in out and "[layer: inputs X; params gamma, beta]" in out
