"""The readable verdict of a check: what an autograder shows a student.

Entries are numbered from 1 as on the sheets (``p[1, 1]``), numbers have 4 significant digits, and
a counterexample is a few short lines: the entries cut to a line, the values of at most a few
of the matrices' entries they use.
"""

from __future__ import annotations

from sympy.printing.str import StrPrinter

from .network import hiding_sizes

SHOWN_CHARS = 120         # longer symbolic entries are cut in the report
SHOWN_VALUES = 4          # entries of the point shown in a counterexample


class EntryPrinter(StrPrinter):
    """SymPy's str printer with matrix entries numbered from 1 and floats to 4 significant digits."""

    def _print_MatrixElement(self, expr):
        return f"{self._print(expr.parent)}[{int(expr.i) + 1}, {int(expr.j) + 1}]"

    def _print_Float(self, expr):
        return f"{float(expr):.4g}"


def _entry_text(expr) -> str:
    return EntryPrinter().doprint(expr)



# --- the report ---------------------------------------------------------------------------------------

def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS].rsplit(" ", 1)[0] + " ..."


def _dims_text(dims: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(dims.items(), key=lambda kv: str(kv[0]))) or "the given sizes"


def _values_text(values: dict, shown: int = SHOWN_VALUES) -> str:
    ordered = sorted(values.items(), key=lambda kv: _entry_text(kv[0]))
    text = ", ".join(f"{_entry_text(k)} = {v:.4g}" for k, v in ordered[:shown])
    return text + (f" and {len(values) - shown} more" if len(values) > shown else "")


def report(r) -> str:
    """The report of a :class:`~.results.CheckResult`."""
    name = f"dL/d{r.param.name}"
    verdict = "right" if r.ok else "WRONG"
    lines = [f"{name}: {verdict}", f"  hand:     {r.hand}", f"  derived:  {r.derived}"]
    lines += [f"    where {left} = {right}" for left, right in r.definitions]
    if r.ok:
        how = ("symbolically (every entry's difference expands to 0) and numerically"
               if r.method == "symbolic" else "numerically (SymPy could not reduce the difference to 0)")
        lines.append(f"  equal at {_dims_text(r.dims)}, shown {how} at {r.points} random points")
        return "\n".join(lines + _caution(r.dims))
    if r.equal_only_at:
        lines.append(f"  equal at {_dims_text(r.equal_only_at)} only: there the sizes make it agree, "
                     f"at {_dims_text(r.dims)} it differs")
    if r.shape_problem:
        lines.append(f"  shape:    {r.shape_problem}")
        lines.append(f"  corrections tried at {_dims_text(r.dims)}")
    if r.counterexample is not None:
        c = r.counterexample
        lines.append(f"  differs at {_dims_text(r.dims)}, first in entry [{c.entry[0] + 1}, {c.entry[1] + 1}]:")
        lines.append(f"    hand:     {_cut(_entry_text(c.named_hand_entry))}")
        lines.append(f"    derived:  {_cut(_entry_text(c.named_derived_entry))}")
        lines.append(f"  counterexample: at {_values_text(c.named_point or c.point)}")
        lines.append(f"    the hand entry is {c.hand_value:.4g}, the derived one {c.derived_value:.4g} "
                     f"(decided numerically, at {r.points} random points)")
    if r.diagnosis is not None:
        d = r.diagnosis
        lines.append(f"  diagnosis ({d.kind}): {d.message}")
        if d.corrected != r.hand:
            lines.append(f"    right:  {d.corrected}")
    else:
        lines.append("  diagnosis: no simple slip explains the difference")
    lines += [f"  note: {note}" for note in r.notes]
    return "\n".join(lines + _caution(r.dims))


def _caution(dims: dict) -> list[str]:
    hiding = hiding_sizes(dims)
    if not hiding:
        return []
    note = (f"  note: at {', '.join(hiding)} a constant factor can pass unseen (2/N is 1 at N=2, N/D is 1 at "
            "N=D); the default dims, distinct odd primes, cannot hide one")
    return [note]
