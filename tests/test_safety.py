"""Hostile names and files cannot do harm; the command's output is reproducible.

* Matrix names that are code (``x; open(...)``), keywords, builtins or the generated module's own
  locals become safe identifiers: the generated module imports only NumPy, calls nothing it should
  not, runs, gives the right gradients, and no payload runs (a marker file is never created).
* The command writes only inside its output folder and never replaces a file it did not generate,
  for every subcommand that writes, unless --force is given.
* Two runs of ``derive build`` into two folders give byte-identical files, PDFs included.
"""

from __future__ import annotations

import ast
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol

import derive
from derive import cli
from derive.examples import catalogue
from derive.render import module as codegen
from derive.render.sheet import GENERATED_MARK

from .evaluator import torch_gradients

N = Symbol("N", integer=True, positive=True)

# Each row names the four matrices X (input), W (weight), b (bias) and Y (target); {marker} is a file
# that any payload run would create.
HOSTILE = {
    "statement after a name": ("x; open('{marker}', 'w')", "W", "b", "Y"),
    "import in a name": ("X", "__import__('os').system('touch {marker}')", "b", "Y"),
    "newline and code": ("X", "W", "b\nopen('{marker}', 'w')", "Y"),
    "keywords": ("class", "def", "return", "lambda"),
    "builtins": ("__import__", "eval", "exec", "open"),
    "the module's own names": ("np", "params", "loss", "grads"),
    "quotes and backslashes": ("x'", 'w"', "b\\", "'''"),
    "closing the docstring": ('x""";open("{marker}", "w");"""', "W", "b", "Y"),
    "same identifier twice": ("x-1", "x_1", "x 1", "x.1"),
}


def hostile_network(names: tuple[str, ...], marker: Path):
    x, w, b, y = (name.format(marker=marker) for name in names)
    X, W = MatrixSymbol(x, N, 2), MatrixSymbol(w, 2, 3)
    B, Y = MatrixSymbol(b, 1, 3), MatrixSymbol(y, N, 3)
    return derive.cross_entropy(derive.tanh(X * W + OneMatrix(N, 1) * B), Y), [W, B, X]


CALLS_GENERATED_CODE_MAY_NOT_MAKE = {"eval", "exec", "open", "compile", "__import__", "system", "getattr"}


@pytest.mark.parametrize("names", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_names_give_safe_code_that_runs_and_is_right(names, tmp_path):
    pytest.importorskip("torch", reason="torch autograd is the truth the generated code is checked against")
    marker = tmp_path / "pwned"
    loss, wrt = hostile_network(names, marker)
    # the network's name goes into the module's header and docstring; verify=True imports the module
    source = derive.to_numpy(derive.gradients(loss, wrt), f'net""";open("{marker}", "w");"""')
    tree = ast.parse(source)
    imports = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert imports <= {"import numpy as np", "import scipy.special"}
    called = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}
    assert not called & CALLS_GENERATED_CODE_MAY_NOT_MAKE

    module = codegen.load_module(source)
    rng = np.random.default_rng(0)
    values = {s.name: rng.uniform(-1, 1, size=tuple(int(d.subs({N: 3})) for d in s.shape))
              for s in loss.atoms(MatrixSymbol)}
    target = next(s.name for s in loss.atoms(MatrixSymbol) if s.shape == (N, 3))
    values[target] = np.eye(3)[[0, 2, 1]]                      # one-hot rows
    params = {p.name: values[p.name] for p in wrt}
    got_loss, got = module.loss_and_grads(params, {k: v for k, v in values.items() if k not in params})
    want_loss, want = torch_gradients(loss, values, {N: 3}, list(params))
    assert got_loss == pytest.approx(want_loss, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=repr(name))
    assert not marker.exists()


def test_hostile_names_from_a_network_file_through_the_command(tmp_path, capsys):
    marker = tmp_path / "pwned"
    network = tmp_path / "..net; rm -rf ~.py"
    network.write_text(textwrap.dedent(f"""
        from sympy import MatrixSymbol, OneMatrix, Symbol
        from derive import mse, relu
        N = Symbol("N", integer=True, positive=True)
        X = MatrixSymbol("x; open({str(marker)!r}, 'w')", N, 2)
        W = MatrixSymbol("class", 2, 1)
        Y = MatrixSymbol("__import__", N, 1)
        loss = mse(relu(X*W), Y)
        wrt = [W]
        dims = {{N: 2}}
    """))
    out = tmp_path / "out"
    for command in ("code", "sheet"):
        assert cli.main([command, str(network), "--output-dir", str(out)]) == 0, capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["net__rm_-rf__.py", "net__rm_-rf__.tex"]
    module = codegen.load_module((out / written[0]).read_text())
    params, batch = module.example_inputs(np.random.default_rng(0))
    _, grads = module.loss_and_grads(params, batch)
    assert set(grads) == {"class"} and np.all(np.isfinite(grads["class"]))
    assert not marker.exists()


# --- the output folder -------------------------------------------------------------------------------

WRITERS = [("sheet", ".tex"), ("code", ".py")]


@pytest.mark.parametrize(("command", "suffix"), WRITERS)
def test_a_file_derive_did_not_write_is_kept_unless_forced(command, suffix, tmp_path, capsys):
    mine = tmp_path / f"seed_000_bce{suffix}"
    mine.write_text("my own work\n" + GENERATED_MARK + "\n")   # the mark, but not on the first line
    code = cli.main([command, "seed_000_bce", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to overwrite" in err and str(mine) in err and "--force" in err
    assert mine.read_text() == "my own work\n" + GENERATED_MARK + "\n"
    assert cli.main([command, "seed_000_bce", "--output-dir", str(tmp_path), "--force"]) == 0
    assert GENERATED_MARK in mine.read_text().splitlines()[0]


def test_build_keeps_foreign_files_and_says_which(monkeypatch, tmp_path, capsys):
    subset = {name: catalogue()[name] for name in ("seed_002_neuron", "seed_000_bce")}
    monkeypatch.setattr("derive.examples.catalogue", lambda: subset)
    monkeypatch.setattr(cli.shutil, "which", lambda program: None)
    mine = tmp_path / "seed_000_bce.py"
    mine.write_text("print('hand-written')\n")
    code = cli.main(["build", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"refusing to overwrite {mine}" in err and "Traceback" not in err
    assert mine.read_text() == "print('hand-written')\n"
    assert (tmp_path / "seed_002_neuron.py").exists() and (tmp_path / "seed_000_bce.tex").exists()


# --- reproducible output -----------------------------------------------------------------------------

def build_into(folder: Path, monkeypatch, capsys, pdf: bool) -> dict[str, bytes]:
    subset = {name: catalogue()[name] for name in ("seed_002_neuron", "seed_003_mlp_column")}
    monkeypatch.setattr("derive.examples.catalogue", lambda: subset)
    if not pdf:
        monkeypatch.setattr(cli.shutil, "which", lambda program: None)
    assert cli.main(["build", "--output-dir", str(folder)]) == 0, capsys.readouterr().err
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("pdf", [False, pytest.param(True, marks=pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex is not installed"))], ids=["tex and py", "with pdf"])
def test_two_builds_are_byte_identical(pdf, tmp_path, monkeypatch, capsys):
    first = build_into(tmp_path / "one", monkeypatch, capsys, pdf)
    second = build_into(tmp_path / "two", monkeypatch, capsys, pdf)
    suffixes = {Path(name).suffix for name in first}
    assert suffixes == ({".tex", ".py", ".pdf"} if pdf else {".tex", ".py"})
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two builds"
