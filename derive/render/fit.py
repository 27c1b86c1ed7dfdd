"""Fitting printed mathematics to the page: how wide a LaTeX formula will be, and where to break it.

:func:`tex_width` estimates, in ems of the sheet's 10pt font, how wide TeX will typeset a math-mode
string: a small reader of the printer's own output (letters, operators, ``\\frac``, sub- and
superscripts, ``\\left``/``\\right``, ``\\text``), erring on the wide side, so that what it accepts
fits. :func:`term_lines` breaks a sum at its terms into lines that each fit a width, the way a
board breaks a long equation. The sheet's template also guards every display it cannot break with
``\\fitwidth`` (shrunk to the line only if TeX finds it too wide), so nothing runs off the page even
where the estimate is wrong; the compile test counts overfull boxes to keep both honest.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sympy import Add, Basic, MatAdd

__all__ = ["LINE_EM", "fits", "term_lines", "tex_width"]

# The text width of the sheet (A4, 2cm margins: 17cm = 48.4em at 10pt), less room for the alignment
# and the equation's indent: a display line of at most this many ems fits.
LINE_EM = 42.0

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}^_&]|\s+|.")

# Widths in ems of the printer's commands (binary operators include their spacing).
_COMMAND_EM = {
    r"\partial": 0.6, r"\odot": 1.3, r"\oslash": 1.3, r"\otimes": 1.3, r"\cdot": 0.8, r"\times": 1.3,
    r"\top": 0.8, r"\circ": 0.5, r"\sum": 1.5, r"\prod": 1.5, r"\log": 1.4, r"\exp": 1.6, r"\det": 1.4,
    r"\quad": 1.0, r"\qquad": 2.0, r"\,": 0.17, r"\;": 0.28, r"\:": 0.22, r"\!": -0.17, r"\ ": 0.33,
    r"\colon": 0.4, r"\ldots": 1.2, r"\cdots": 1.2, r"\dots": 1.2, r"\infty": 1.0, r"\le": 1.3,
    r"\ge": 1.3, r"\leq": 1.3, r"\geq": 1.3, r"\neq": 1.3, r"\to": 1.3, r"\mapsto": 1.3, r"\in": 1.2,
    r"\Phi": 0.75, r"\phi": 0.6, r"\sigma": 0.6, r"\delta": 0.5, r"\alpha": 0.65, r"\tanh": 2.2,
    r"\mathrel": 0.0, r"\displaystyle": 0.0, r"\limits": 0.0, r"\hat": 0.0, r"\bar": 0.0,
    r"\tilde": 0.0, r"\\": 0.0, r"\{": 0.5, r"\}": 0.5, r"\_": 0.5, r"\%": 0.8, r"\#": 0.8, r"\&": 0.8,
}
_BINARY = {"+": 1.3, "-": 1.3, "=": 1.4, "<": 1.3, ">": 1.3}
_NARROW = {",": 0.45, ";": 0.45, ".": 0.3, "(": 0.42, ")": 0.42, "[": 0.35, "]": 0.35, "|": 0.3, "'": 0.3,
           "/": 0.5, "!": 0.3, ":": 0.5}
# commands whose (first) argument is set in text, about 0.5em a character
_TEXT_ARGUMENT = {r"\text", r"\operatorname", r"\mathrm", r"\textbackslash"}
_SCRIPT = 0.72   # sub- and superscripts are set at about 70%
# Measured against pdflatex (\\setbox0=\\hbox{$\\displaystyle ...$}, \\the\\wd0) on the sheets' own formulas,
# the reader comes out 0-13% narrow (display fractions, delimiters around them): it is scaled up.
_CALIBRATION = 1.18


class _Reader:
    def __init__(self, tex: str):
        self.tokens = [t for t in _TOKEN.findall(tex) if not t.isspace()]
        self.at = 0

    def next(self) -> str | None:
        if self.at >= len(self.tokens):
            return None
        token = self.tokens[self.at]
        self.at += 1
        return token

    def group(self) -> list[str]:
        """The tokens of the next argument: a braced group or one token."""
        token = self.next()
        if token != "{":
            return [] if token is None else [token]
        depth, out = 1, []
        while (token := self.next()) is not None:
            depth += {"{": 1, "}": -1}.get(token, 0)
            if depth == 0:
                break
            out.append(token)
        return out


def _width(tokens: list[str], scale: float = 1.0) -> float:
    reader = _Reader("")
    reader.tokens = tokens
    lines, width = [], 0.0
    while (token := reader.next()) is not None:
        if token == r"\\":
            lines.append(width)
            width = 0.0
        elif token == "{":
            reader.at -= 1
            width += _width(reader.group(), scale)
        elif token in ("^", "_"):
            width += _width(reader.group(), scale * _SCRIPT)
        elif token == r"\frac":
            top, bottom = reader.group(), reader.group()
            width += max(_width(top, scale), _width(bottom, scale)) + 0.25 * scale
        elif token in (r"\underset", r"\overset", r"\underbrace"):
            under, over = reader.group(), reader.group()
            width += max(_width(under, scale * _SCRIPT), _width(over, scale))
        elif token in (r"\left", r"\right", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr"):
            delimiter = reader.next() or ""
            width += (0.0 if delimiter == "." else 0.5) * scale
        elif token in _TEXT_ARGUMENT:
            text = reader.group()
            width += 0.52 * scale * sum(len(t) if not t.startswith("\\") else 1 for t in text)
        elif token in (r"\mathbf", r"\mathbb", r"\boldsymbol", r"\mathit", r"\mathcal"):
            width += 1.1 * _width(reader.group(), scale)
        elif token == r"\boxed":
            width += _width(reader.group(), scale) + 0.8 * scale
        elif token.startswith("\\"):
            width += _COMMAND_EM.get(token, 0.85) * scale
        elif token in _BINARY:
            width += _BINARY[token] * scale
        elif token in _NARROW:
            width += _NARROW[token] * scale
        elif token == "&" or token == "}":
            continue
        else:
            width += 0.55 * scale
    lines.append(width)
    return max(lines)


def tex_width(tex: str) -> float:
    """About how many ems wide TeX sets the math-mode string ``tex`` (the widest of its ``\\\\`` lines)."""
    return _CALIBRATION * _width(_Reader(tex).tokens)


def fits(tex: str, room: float = LINE_EM) -> bool:
    return tex_width(tex) <= room


def term_lines(expr: Basic, printer: Callable[[Basic], str], room: float = LINE_EM,
               first_room: float | None = None) -> list[str] | None:
    """``expr`` printed on as few lines as fit ``room`` ems, broken between the terms of its top-level
    sum; each later line starts with its term's sign. None when one term alone is too wide (or
    ``expr`` is no sum and too wide): the caller chooses another way to show it."""
    first_room = room if first_room is None else first_room
    if not isinstance(expr, (Add, MatAdd)):
        whole = printer(expr)
        return [whole] if tex_width(whole) <= first_room else None
    terms = _signed_terms(expr, printer)   # each term printed once: the whole is their join
    whole = " ".join((text if sign == "+" else f"-{text}") if n == 0 else f"{sign} {text}"
                     for n, (sign, text) in enumerate(terms))
    if tex_width(whole) <= first_room:
        return [whole]
    lines: list[str] = []
    current = ""
    for n, (sign, text) in enumerate(terms):
        piece = (text if sign == "+" else f"-{text}") if n == 0 else f"{sign} {text}"
        limit = first_room if not lines else room
        candidate = f"{current} {piece}" if current else piece
        if current and tex_width(candidate) > limit:
            lines.append(current)
            candidate, limit = piece, room
        if tex_width(candidate) > limit:
            return None
        current = candidate
    lines.append(current)
    return lines


def _signed_terms(expr: Basic, printer: Callable[[Basic], str]) -> list[tuple[str, str]]:
    """The terms of a sum as (sign, printed magnitude), in the order the printer writes them."""
    out = []
    for term in (expr.as_ordered_terms() if isinstance(expr, Add) else expr.args):
        text = printer(term)
        if text.startswith("-"):
            out.append(("-", text[1:].lstrip()))
        else:
            out.append(("+", text))
    # the LaTeX printer writes positive terms first and a broadcast bias 1 b last (latex._print_MatAdd)
    if isinstance(expr, MatAdd):
        out.sort(key=lambda st: (st[0] == "-", st[1].startswith(r"\mathbf{1} ")))
    return out
