"""The derive command: exit codes, one-line errors, the generated-file guard, safe paths, atomic writes."""

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

from derive import cli
from derive.examples import catalogue, get, layers
from derive.render.sheet import GENERATED_MARK, to_latex

EXAMPLES = list(catalogue())


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("derive: "), err
    assert "Traceback" not in err


def test_list_names_every_example(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == EXAMPLES + list(layers())   # the networks, then the layers


@pytest.mark.parametrize("name", EXAMPLES)
def test_sheet_writes_the_renderers_sheet(name, tmp_path, capsys):
    code, out, _ = run(["sheet", name, "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    written = (tmp_path / f"{name}.tex").read_text()
    example = get(name)
    expected = to_latex(example.derive(), title=example.title, source=example.source,
                        dims={str(k): v for k, v in example.dims.items()}, values=example.values)
    assert written == expected
    assert f"wrote {tmp_path / (name + '.tex')}" in out


def test_dims_option_changes_the_written_out_size(tmp_path, capsys):
    code, _, _ = run(["sheet", "seed_001_linreg_batch", "--dims", "N=3", "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    assert "Written out at $N = 3$" in (tmp_path / "seed_001_linreg_batch.tex").read_text()


BAD_INPUT = [
    ("unknown example", ["sheet", "no_such_net"], "no built-in example named 'no_such_net'"),
    ("missing file", ["sheet", "missing.py"], "does not exist"),
    ("bad dims", ["sheet", "seed_000_bce", "--dims", "N=two"], "N=two"),
    ("zero dims", ["sheet", "seed_000_bce", "--dims", "N=0"], "N=0"),
]


@pytest.mark.parametrize(("argv", "message"), [row[1:] for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT])
def test_user_errors_are_one_line_with_exit_2(argv, message, tmp_path, capsys):
    code, _, err = run([*argv, "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err)
    assert message in err


# --- network files ------------------------------------------------------------------------------

GOOD_FILE = """
    from sympy import MatrixSymbol, OneMatrix, Symbol
    from derive import mse, relu
    N = Symbol("N", integer=True, positive=True)
    X, y = MatrixSymbol("X", N, 2), MatrixSymbol("y", N, 1)
    w, b = MatrixSymbol("w", 2, 1), MatrixSymbol("b", 1, 1)
    loss = mse(relu(X * w + OneMatrix(N, 1) * b), y)
    wrt = [w, b]
    dims = {N: 2}
    title = "A file network"
"""

BAD_FILES = [
    ("no wrt", "from derive import mse\nloss = 1\n", "must define wrt"),
    ("raises", "raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("syntax", "loss = (\n", "SyntaxError"),
    ("names not a dict", GOOD_FILE.replace('title = "A file network"', "names = 3"), "names must be a dict"),
]


def write_network(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def test_network_file_gives_a_sheet(tmp_path, capsys):
    path = write_network(tmp_path, "mynet.py", GOOD_FILE)
    code, _, _ = run(["sheet", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 0
    tex = (tmp_path / "out" / "mynet.tex").read_text()
    assert "A file network" in tex and "Written out at $N = 2$" in tex


@pytest.mark.parametrize(("source", "message"), [row[1:] for row in BAD_FILES], ids=[row[0] for row in BAD_FILES])
def test_bad_network_files_are_one_line_errors(source, message, tmp_path, capsys):
    path = write_network(tmp_path, "bad.py", source)
    code, _, err = run(["sheet", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert_one_line_error(err)
    assert message in err and "bad.py" in err
    assert not (tmp_path / "out" / "bad.tex").exists()


def test_verbose_shows_the_traceback(tmp_path, capsys):
    path = write_network(tmp_path, "bad.py", "raise RuntimeError('boom')\n")
    code, _, err = run(["sheet", str(path), "--verbose", "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("derive: ")


# A bug inside each command (the function it calls raises): exit 3, never 1 (derive check's "wrong").
INTERNAL_ERRORS = [
    ("list", ["list"], "derive.examples", "catalogue"),
    ("sheet", ["sheet", "seed_000_bce"], "derive.cli", "sheet_text"),
    ("code", ["code", "seed_000_bce"], "derive.cli", "code_text"),
    ("build", ["build"], "derive.cli", "build_sheet"),
    ("check", ["check", "seed_000_bce", "--wrt", "w2", "--hand", "h^T dL/dz"], "derive.checker.check", "check"),
    ("bench", ["bench", "--derivation-only"], "derive.bench.derivation", "full_report"),
]


@pytest.mark.parametrize(("argv", "module", "name"), [row[1:] for row in INTERNAL_ERRORS],
                         ids=[row[0] for row in INTERNAL_ERRORS])
def test_internal_errors_exit_3_and_say_how_to_report(argv, module, name, monkeypatch, tmp_path, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(importlib.import_module(module), name, broken)
    writes = argv[0] not in ("list", "check")      # only commands that write files take --output-dir
    code, _, err = run([*argv, *(["--output-dir", str(tmp_path)] if writes else [])], capsys)
    assert code == cli.INTERNAL_ERROR == 3
    assert_one_line_error(err)
    assert "internal error (ZeroDivisionError: division by zero)" in err and "report" in err


def test_help_states_the_exit_codes():
    text = " ".join(cli.build_parser().format_help().split())
    assert "3 on an internal error" in text
    assert "derive check: 0 the hand gradient is right, 1 it is wrong" in text
    assert "check a hand-derived gradient (exit 0 right, 1 wrong, 2 bad input, 3 internal error)" in text


# --- the output folder ----------------------------------------------------------------------------

def test_refuses_to_overwrite_a_file_it_did_not_generate(tmp_path, capsys):
    mine = tmp_path / "seed_000_bce.tex"
    mine.write_text("my own notes\n")
    code, _, err = run(["sheet", "seed_000_bce", "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err)
    assert "--force" in err
    assert mine.read_text() == "my own notes\n"
    code, _, _ = run(["sheet", "seed_000_bce", "--force", "--output-dir", str(tmp_path)], capsys)
    assert code == 0 and GENERATED_MARK in mine.read_text().splitlines()[0]


def test_regenerates_its_own_files_without_force(tmp_path, capsys):
    for _ in range(2):
        code, _, _ = run(["sheet", "seed_000_bce", "--output-dir", str(tmp_path)], capsys)
        assert code == 0


TRAVERSAL_NAMES = ["../../etc/passwd", "..", "/abs/path", "a b$c", "..hidden", "x/../../y", ""]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_output_paths_stay_inside_the_output_folder(name, tmp_path):
    path = cli.output_path(tmp_path, name, ".tex")
    assert path.parent == tmp_path.resolve()
    assert path.name.endswith(".tex") and not path.name.startswith(".")


def test_network_file_with_odd_name_writes_inside_the_folder(tmp_path, capsys):
    path = write_network(tmp_path, "..we ird$name.py", GOOD_FILE)
    out = tmp_path / "out"
    code, _, _ = run(["sheet", str(path), "--output-dir", str(out)], capsys)
    assert code == 0
    assert [p.name for p in out.iterdir()] == ["we_ird_name.tex"]


def test_writes_are_atomic(monkeypatch, tmp_path, capsys):
    target = tmp_path / "seed_000_bce.tex"
    run(["sheet", "seed_000_bce", "--output-dir", str(tmp_path)], capsys)
    before = target.read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    code, _, err = run(["sheet", "seed_000_bce", "--dims", "N=3", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and "disk full" in err
    assert target.read_text() == before                   # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["seed_000_bce.tex"]   # no temporary left behind


# --- build and help ---------------------------------------------------------------------------------

def test_build_without_tex_says_pdfs_are_skipped(monkeypatch, tmp_path, capsys):
    subset = {name: catalogue()[name] for name in ("seed_001_linreg_batch", "seed_002_neuron")}
    monkeypatch.setattr("derive.examples.catalogue", lambda: subset)
    monkeypatch.setattr(cli.shutil, "which", lambda program: None)
    code, _, err = run(["build", "--output-dir", str(tmp_path)], capsys)
    assert "pdflatex was not found: PDFs skipped" in err
    for name in subset:
        assert GENERATED_MARK in (tmp_path / f"{name}.tex").read_text().splitlines()[0]
        assert not (tmp_path / f"{name}.pdf").exists()
    if importlib.util.find_spec("derive.render.module") is None:
        assert code == 2 and "NumPy code generation is not available" in err
    else:
        assert code == 0
        assert all((tmp_path / f"{name}.py").is_file() for name in subset)


@pytest.mark.skipif(cli.shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_sheet_pdf(tmp_path, capsys):
    code, _, _ = run(["sheet", "seed_002_neuron", "--pdf", "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    pdf = tmp_path / "seed_002_neuron.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and cli.is_generated(pdf)
    code, _, _ = run(["sheet", "seed_002_neuron", "--pdf", "--output-dir", str(tmp_path)], capsys)
    assert code == 0   # its own PDF is recognised and replaced


@pytest.mark.parametrize("argv", [["--help"], ["sheet", "--help"], ["build", "--help"]])
def test_help_documents_the_commands(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    if argv == ["--help"]:
        assert all(word in out for word in ("list", "sheet", "code", "build", "A network file", "Exit status"))
    else:
        assert all(option in out for option in ("--output-dir", "--dims", "--force", "--verbose"))


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_convention_option_writes_the_column_variant(tmp_path):
    from derive.cli import main
    assert main(["sheet", "mlp3_relu", "--convention", "columns", "--output-dir", str(tmp_path)]) == 0
    text = (tmp_path / "mlp3_relu_columns.tex").read_text()
    assert "Generated by derive" in text.splitlines()[0]
    assert main(["sheet", "seed_000_bce", "--convention", "columns", "--output-dir", str(tmp_path)]) == 2


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs fewer threads than CPUs")
def test_bench_threads_without_threadpoolctl_fails_before_measuring(capsys, monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    code, out, err = run(["bench", "--threads", "1", "--quick", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err)
    assert "threadpoolctl" in err and out == ""  # not even the derivation table was computed


@pytest.mark.skipif(cli.shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_a_failed_compile_quotes_pdflatexs_error_and_keeps_its_log(tmp_path):
    tex = tmp_path / "broken.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\n\\notacommand\n\\end{document}\n")
    with pytest.raises(cli.LatexError) as caught:
        cli.compile_pdf(tex, tmp_path / "out", force=True)
    message = str(caught.value)
    assert "Undefined control sequence" in message and "\\notacommand" in message
    assert "Undefined control sequence" in (tmp_path / "broken.log").read_text()


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_code_with_hvp_writes_a_verified_hvp(target, tmp_path, capsys):
    pytest.importorskip("torch", reason="torch autograd's HVP is the truth here")
    import numpy as np

    from derive.render.module import load_module

    from .evaluator import torch_hvp
    code, _, _ = run(["code", "seed_000_bce", "--hvp", "--target", target, "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    suffix = ".py" if target == "numpy" else "_torch.py"
    module = load_module((tmp_path / f"seed_000_bce{suffix}").read_text())
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((2, 3)), "w2": rng.standard_normal((3, 1)), "b": rng.standard_normal((1, 1))}
    batch = {"X": rng.standard_normal((4, 2)), "y": rng.uniform(0.1, 0.9, (4, 1))}
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    if target == "torch":
        import torch
        as_tensors = lambda d: {k: torch.tensor(v) for k, v in d.items()}
        products = {k: v.numpy() for k, v in module.hvp(*map(as_tensors, (params, batch, directions))).items()}
    else:
        products = module.hvp(params, batch, directions)
    g = get("seed_000_bce").derive()
    want = torch_hvp(g.loss, params, batch, {s: 4 for s in g.loss.free_symbols if s.name == "N"}, directions)
    for k in params:
        assert np.allclose(products[k], want[k], rtol=1e-9, atol=1e-12), k


def test_code_with_a_workspace_writes_a_step_and_hvp_that_reuse_their_arrays(tmp_path, capsys):
    import numpy as np

    from derive.render.module import load_module

    code, _, _ = run(["code", "seed_000_bce", "--hvp", "--workspace", "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    module = load_module((tmp_path / "seed_000_bce.py").read_text())
    workspace = module.Workspace()
    rng = np.random.default_rng(0)
    params, batch = module.example_inputs(rng)
    directions = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    first = module.hvp(params, batch, directions, workspace=workspace)["w1"]
    again = module.hvp(params, batch, directions, workspace=workspace)["w1"]
    assert again is first   # written into the first call's array
    np.testing.assert_allclose(again, module.hvp(params, batch, directions)["w1"], rtol=1e-12)
    # the gradient itself against central differences of the module's loss, at the workspace's second call
    _, grads = module.loss_and_grads(params, batch, workspace=workspace)
    step, e = 1e-6, np.zeros_like(params["w1"])
    e[0, 0] = step
    up = module.forward({**params, "w1": params["w1"] + e}, batch)[0]
    down = module.forward({**params, "w1": params["w1"] - e}, batch)[0]
    assert np.isclose(grads["w1"][0, 0], (up - down) / (2 * step), rtol=1e-6)


def test_code_refuses_a_workspace_for_torch(tmp_path, capsys):
    code, _, err = run(["code", "seed_000_bce", "--workspace", "--target", "torch", "--output-dir", str(tmp_path)],
                       capsys)
    assert code != 0 and "--workspace is offered for the NumPy target only, not torch" in err
    assert not list(tmp_path.iterdir())
