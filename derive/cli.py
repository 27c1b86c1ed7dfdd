"""The ``derive`` command: list the built-in networks, write derivation sheets and NumPy code.

    derive list
    derive sheet NET [--pdf] [--dims N=2,D=3] [--output-dir DIR] [--force]
    derive code NET [--output-dir DIR] [--force]
    derive build [--dims ...] [--output-dir DIR] [--force]

NET is a built-in example's name (``derive list``) or a Python file that defines ``loss`` (a SymPy
scalar) and ``wrt`` (the MatrixSymbols to differentiate with respect to), and optionally ``names``
(``{"Z": X*W + b}``), ``dims`` (``{N: 2}``), ``values`` (``{w: 2}``) and ``title``.

Every file the command writes starts with a line saying derive generated it; a file without that
line is never overwritten unless ``--force`` is given. Files are written to a temporary file in the
output folder and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from sympy import MatrixSymbol

from .bench import step as bench
from .errors import DeriveError, DimsError, LatexError, NetworkFileError, OutputError
from .examples import Example
from .render.sheet import GENERATED_MARK
from .version import __version__

__all__ = ["main"]

TEX_MISSING = ("pdflatex was not found: PDFs skipped (install TeX Live's texlive-latex-base, "
               "texlive-latex-recommended and texlive-pictures to get them)")
CONVENTIONS = ("rows", "columns")
INTERNAL_ERROR = 3   # not 1: derive check's 1 means "the hand gradient is wrong"
REPORT = ("this is a bug in derive, not in your input; please report it with the command you ran and the "
          "output of the same command with --verbose")


NETWORK_FILE_HELP = """\
A network file is Python run with runpy; it must define
  loss    a SymPy scalar (for example derive.mse(...)) of MatrixSymbols
  wrt     the MatrixSymbols to differentiate with respect to (a list)
and may define
  names   {"Z": X*W + OneMatrix(N, 1)*b, ...}  names for intermediate quantities
  dims    {N: 2}         sizes at which the sheet writes the gradients out entry by entry
  values  {w: 2, x: -1}  numbers for the computation graph (networks of 1 x 1 matrices)
  title   the sheet's title
  convention  "rows" (default: rows are examples, X W + 1 b) or "columns" (W x + b)
Output files are named after the example or the file (NAME.tex, NAME.pdf, NAME.py). A file that
does not start with derive's header line is never overwritten unless --force is given.

Exit status: 0 on success, 2 on a problem with the input or the output folder, 3 on an internal error
(run again with --verbose and report it). derive check: 0 the hand gradient is right, 1 it is wrong,
2 bad input (a formula outside the grammar, an unknown parameter), 3 an internal error."""


# --- finding the network -----------------------------------------------------------------------

def load_network(spec: str, convention: str | None = None) -> Example:
    """A built-in example by name (in ``convention`` when given), or a network file (any argument
    that is a path or ends in .py), as an :class:`~derive.examples.Example`."""
    from .examples import catalogue, get
    if spec in catalogue():
        return get(spec, convention)
    path = Path(spec)
    if path.suffix == ".py" or os.sep in spec or path.exists():
        network = load_network_file(path)
        if convention is not None and network.convention != convention:
            raise NetworkFileError(f"{path} is written with {network.convention} as examples (its `convention`), "
                                   f"not {convention}")
        return network
    raise NetworkFileError(f"no built-in example named {spec!r} and no file {spec!r}; "
                           "'derive list' shows the built-in ones")


def load_network_file(path: Path) -> Example:
    if not path.is_file():
        raise NetworkFileError(f"network file {str(path)!r} does not exist")
    try:
        namespace = runpy.run_path(str(path), run_name="derive_network")
    except SystemExit as error:  # exit() in the file would otherwise end derive silently with its code
        raise NetworkFileError(f"{path}: it called exit({error.code!r}) instead of defining loss and wrt") from error
    except Exception as error:  # the user's code: report it in one line, whatever it raised
        raise NetworkFileError(f"{path}: running it failed with {type(error).__name__}: {error}") from error
    missing = [key for key in ("loss", "wrt") if key not in namespace]
    if missing:
        raise NetworkFileError(f"{path} must define {' and '.join(missing)} (the scalar loss and the list of "
                               "MatrixSymbols to differentiate with respect to)")
    wrt = namespace["wrt"]
    wrt = (wrt,) if isinstance(wrt, MatrixSymbol) else tuple(wrt) if isinstance(wrt, (list, tuple)) else wrt
    optional = {}
    for key in ("names", "dims", "values"):
        value = namespace.get(key, {}) or {}
        if not isinstance(value, dict):
            raise NetworkFileError(f"{path}: {key} must be a dict, got {type(value).__name__}")
        optional[key] = value
    title = str(namespace.get("title", f"The network of {path.name}"))
    convention = namespace.get("convention", "rows")
    if convention not in CONVENTIONS:
        raise NetworkFileError(f"{path}: convention must be 'rows' or 'columns', got {convention!r}")
    return Example(path.stem, title, str(path), namespace["loss"], wrt, **optional, convention=convention)


def parse_dims(text: str | None) -> dict:
    """``"N=2,D=3"`` -> ``{"N": 2, "D": 3}``."""
    if not text:
        return {}
    dims = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value.isdigit() or int(value) < 1:
            raise DimsError(f"--dims: {item.strip()!r} is not NAME=POSITIVE_INTEGER (write e.g. --dims N=2,D=3)")
        dims[key] = int(value)
    return dims


# --- writing files -----------------------------------------------------------------------------

def safe_stem(name: str) -> str:
    """A file name stem that stays inside the output folder: letters, digits, _ . - only."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return stem or "network"


def output_path(out_dir: Path, name: str, suffix: str) -> Path:
    path = (out_dir / (safe_stem(name) + suffix)).resolve()
    if path.parent != out_dir.resolve():
        raise OutputError(f"refusing to write {path}: it is outside the output folder {out_dir}")
    return path


def is_generated(path: Path) -> bool:
    """True when ``path``'s first line (or a PDF's info) says derive generated it."""
    with open(path, "rb") as handle:
        head = handle.read(4096) if path.suffix != ".pdf" else handle.read()
    if path.suffix == ".pdf":
        return GENERATED_MARK.encode() in head
    first_line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    return GENERATED_MARK.lower() in first_line.lower()


def check_writable(path: Path, force: bool) -> None:
    if path.exists() and not force and not is_generated(path):
        raise OutputError(f"refusing to overwrite {path}: it was not generated by derive "
                          "(its first line lacks the header); pass --force to replace it")


def write_atomic(path: Path, data: bytes | str, force: bool) -> Path:
    """Write to a temporary file next to ``path`` and rename it into place."""
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


# --- what the command produces ---------------------------------------------------------------------

def sheet_text(network: Example, dims: dict) -> str:
    """The sheet, written out at the given dims, else at the network's own when it has all of them."""
    from .core.dims import normalize_dims
    from .render.sheet import to_latex
    g = network.derive()
    merged = {**{str(k): v for k, v in network.dims.items()}, **dims}
    try:
        normalize_dims(merged, g.root)
    except DimsError:
        if dims:
            raise
        merged = None   # the network leaves some sizes open and none were asked for: no written-out part
    return to_latex(g, title=network.title, source=network.source, dims=merged, values=network.values)


def code_text(network: Example) -> str:
    """The verified NumPy module (its template starts with derive's generated-file line)."""
    from .render.module import to_numpy
    return to_numpy(network.derive(), safe_identifier(network.name))


def safe_identifier(name: str) -> str:
    identifier = re.sub(r"\W", "_", name)
    return identifier if identifier and not identifier[0].isdigit() else f"net_{identifier}"


def compile_pdf(tex_path: Path, out_dir: Path, force: bool) -> Path:
    """Compile ``tex_path`` with pdflatex in a scratch folder and move the PDF into ``out_dir``."""
    pdflatex = shutil.which("pdflatex")
    with tempfile.TemporaryDirectory(prefix="derive-tex-") as scratch:
        source = Path(scratch) / "sheet.tex"
        shutil.copyfile(tex_path, source)
        run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                              "sheet.tex"], cwd=scratch, capture_output=True, text=True, timeout=120, check=False,
                             env=reproducible_env())
        pdf = Path(scratch) / "sheet.pdf"
        if run.returncode != 0 or not pdf.exists():
            raise LatexError(f"pdflatex could not compile {tex_path.name}: {first_tex_error(run.stdout)}")
        return write_atomic(output_path(out_dir, tex_path.stem, ".pdf"), pdf.read_bytes(), force)


def reproducible_env() -> dict:
    """pdfTeX stamps the time into the PDF (dates and /ID): a fixed SOURCE_DATE_EPOCH makes two builds
    byte-identical. A SOURCE_DATE_EPOCH already set by the caller (a packager) is kept."""
    return {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0"), "FORCE_SOURCE_DATE": "1"}


def first_tex_error(log: str) -> str:
    for line in log.splitlines():
        if line.startswith("!"):
            return line[1:].strip()
    return "no error message in the log (see pdflatex's output)"


# --- the subcommands -------------------------------------------------------------------------------

def cmd_list(args) -> int:
    from .examples import catalogue
    for name, e in catalogue().items():
        params = ", ".join(p.name for p in e.wrt)
        print(f"{name:28s} {e.title}  [wrt {params}]")
    return 0


def cmd_sheet(args) -> int:
    network = load_network(args.net, args.convention)
    out_dir = Path(args.output_dir)
    tex = write_atomic(output_path(out_dir, network.name, ".tex"), sheet_text(network, parse_dims(args.dims)),
                       args.force)
    print(f"wrote {tex}")
    if args.pdf:
        if shutil.which("pdflatex") is None:
            print(f"derive: {TEX_MISSING}", file=sys.stderr)
        else:
            print(f"wrote {compile_pdf(tex, out_dir, args.force)}")
    return 0


def cmd_code(args) -> int:
    network = load_network(args.net, args.convention)
    source = code_text(network)
    path = write_atomic(output_path(Path(args.output_dir), network.name, ".py"), source, args.force)
    print(f"wrote {path}")
    return 0


def cmd_build(args) -> int:
    from .examples import catalogue
    out_dir = Path(args.output_dir)
    dims = parse_dims(args.dims)
    have_tex = shutil.which("pdflatex") is not None
    if not have_tex:
        print(f"derive: {TEX_MISSING}", file=sys.stderr)
    failures = 0
    for name, example in catalogue().items():
        # --convention switches the examples that come in both conventions; the others keep their own
        network = load_network(name, args.convention if args.convention in example.variants else None)
        for what, make in (("sheet", lambda n: build_sheet(n, out_dir, dims, have_tex, args.force)),
                           ("code", lambda n: build_code(n, out_dir, args.force))):
            try:
                for path in make(network):
                    print(f"wrote {path}")
            except DeriveError as error:
                failures += 1
                print(f"derive: {name} ({what}): {error}", file=sys.stderr)
    if failures:
        print(f"derive: {failures} file(s) could not be built (see above)", file=sys.stderr)
    return 2 if failures else 0


def build_sheet(network: Example, out_dir: Path, dims: dict, have_tex: bool, force: bool) -> list[Path]:
    tex = write_atomic(output_path(out_dir, network.name, ".tex"), sheet_text(network, dims), force)
    return [tex, compile_pdf(tex, out_dir, force)] if have_tex else [tex]


def build_code(network: Example, out_dir: Path, force: bool) -> list[Path]:
    return [write_atomic(output_path(out_dir, network.name, ".py"), code_text(network), force)]


def run_check(network, wrt_name: str, hand_text: str, dims: dict | None = None) -> tuple[int, str]:
    """``derive check NET --wrt W --hand "..."``: (exit code, text). 0 right, 1 wrong, 2 bad input.

    ``network`` is a built-in example's name, or anything with ``name``, ``loss``, ``wrt`` and
    ``names`` (an :class:`~derive.examples.Example`, the command's loaded network file).
    """
    from .checker import check as checking
    from .examples import get
    try:
        example = get(network) if isinstance(network, str) else network
        params = {p.name: p for p in example.wrt}
        if wrt_name not in params:
            return 2, f"error: {example.name} has no parameter {wrt_name!r}; its parameters: {', '.join(params)}"
        result = checking.check(hand_text, example.loss, params[wrt_name], names=example.names, dims=dims or None)
    except DeriveError as error:
        return 2, f"error: {error}"
    return (0 if result else 1), result.report()


def cmd_check(args) -> int:
    code, text = run_check(load_network(args.net, args.convention), args.wrt, args.hand, dims=parse_dims(args.dims) or None)
    print(text, file=sys.stderr if code == 2 else sys.stdout)
    return code


def cmd_bench(args) -> int:
    from .bench import derivation as derivation_bench
    from .bench import printing as printing_bench
    if not args.derivation_only:
        bench.thread_limiter(args.threads)  # before the derivation table: say at once what is missing
    table = derivation_bench.full_report(args.repeats or 5) + "\n" + printing_bench.full_report()
    print(table)
    out = Path(args.out or Path(args.output_dir) / "bench")
    write_atomic(output_path(out, "derivation", ".md"),
                 f"<!-- {GENERATED_MARK} (derive bench); do not edit -->\n{table}\n", force=args.force)
    return 0 if args.derivation_only else bench.main_bench(args)


# --- the parser and the entry point ------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output-dir", default="output", metavar="DIR",
                        help="folder for the generated files (default: output/)")
    common.add_argument("--force", action="store_true",
                        help="overwrite files even when they were not generated by derive")
    common.add_argument("--verbose", action="store_true", help="show the full traceback of an error")
    common.add_argument("--convention", choices=CONVENTIONS,
                        help="rows as examples (X W + 1 b) or column vectors (W X + b 1^T), for the built-in "
                             "examples that come in both (default: each network's own)")
    net_help = ("a built-in example (see 'derive list') or a Python file defining loss and wrt, and "
                "optionally names, dims, values and title (see derive --help)")
    dims_help = "concrete sizes for the sheet's written-out gradients, e.g. N=2,D=3 (default: the example's)"

    parser = argparse.ArgumentParser(
        prog="derive", description="Symbolic matrix calculus for backpropagation: derivation sheets "
        "(LaTeX, PDF) and verified NumPy code for a network's gradients.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=NETWORK_FILE_HELP)
    parser.add_argument("--version", action="version", version=f"derive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="list the built-in example networks")
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("sheet", parents=[common], help="write the LaTeX derivation sheet NAME.tex")
    p.add_argument("net", metavar="NET", help=net_help)
    p.add_argument("--dims", metavar="N=2,D=3", help=dims_help)
    p.add_argument("--pdf", action="store_true", help="also compile it to NAME.pdf with pdflatex")
    p.set_defaults(run=cmd_sheet)
    p = sub.add_parser("code", parents=[common], help="write verified NumPy code NAME.py for the gradients")
    p.add_argument("net", metavar="NET", help=net_help)
    p.set_defaults(run=cmd_code)
    p = sub.add_parser("build", parents=[common],
                       help="write .tex, .pdf (when pdflatex is installed) and .py for every built-in example")
    p.add_argument("--dims", metavar="N=2,D=3", help=dims_help)
    p.set_defaults(run=cmd_build)
    p = sub.add_parser("check", parents=[common],
                       help="check a hand-derived gradient (exit 0 right, 1 wrong, 2 bad input, 3 internal error)")
    p.add_argument("net", metavar="NET", help=net_help)
    p.add_argument("--wrt", required=True, metavar="W", help="the parameter the hand gradient is for")
    p.add_argument("--hand", required=True, metavar="FORMULA",
                   help="the hand gradient, e.g. \"X^T (dL/dZ ⊙ relu'(Z))\" (grammar in README.md)")
    p.add_argument("--dims", metavar="N=2,D=3", help="sizes to compare at (default: distinct odd primes, which cannot hide a factor)")
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("bench", parents=[common],
                       help="time the generated gradient step against PyTorch eager and the matrix-product "
                            "floor, and deriving against depth (results in OUTPUT_DIR/bench)")
    bench.add_bench_arguments(p)
    p.add_argument("--derivation-only", action="store_true",
                   help="only time deriving an L-layer MLP against depth, beside SymPy's own diff")
    p.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:   # the reader went away (derive list | head): nothing left to say
        return 0
    except (DeriveError, OSError) as error:
        if args.verbose:
            traceback.print_exc()
        print(f"derive: {one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - anything else is our bug: say so and how to report it
        if args.verbose:
            traceback.print_exc()
        print(f"derive: internal error ({type(error).__name__}: {one_line(error)}); {REPORT}", file=sys.stderr)
        return INTERNAL_ERROR


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
