"""What a check finds: the verdict (:class:`CheckResult`, truthy when the hand gradient is right),
the counterexample and the diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sympy import (
    Basic,
    MatrixSymbol,
)

from .report import report

# --- results ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Diagnosis:
    """A slip: its kind (a key of :data:`DIAGNOSES`), what it is, and the formula that is right."""

    kind: str
    message: str
    corrected: str


@dataclass(frozen=True)
class Counterexample:
    """The first differing entry at concrete dims: both entries and both values at one point."""

    entry: tuple[int, int]
    hand_entry: Basic           # in the network's own symbols
    derived_entry: Basic
    point: dict                 # the entries of the network's matrices used by the two entries
    hand_value: float
    derived_value: float
    named_hand_entry: Basic = None      # the same entries with named quantities kept (h[0, 1]): readable
    named_derived_entry: Basic = None
    named_point: dict = field(default_factory=dict)   # the values of what the named entries use


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found. Truthy exactly when the hand gradient equals the derived one."""

    ok: bool
    param: MatrixSymbol
    hand: str                          # the hand formula, in the grammar's notation
    derived: str                       # the derived gradient, compact (``X^T dL/dZ``)
    dims: dict
    method: str                        # "symbolic" or "numeric": how equality (or not) was decided
    points: int
    shape_problem: str | None = None
    counterexample: Counterexample | None = None
    diagnosis: Diagnosis | None = None
    definitions: tuple = field(default=())   # (name, formula) of the gradients the hand or derived use
    equal_only_at: dict | None = None        # the first dims, where a formula wrong at ``dims`` happened to agree
    notes: tuple = field(default=())         # how the grammar read a part the hand may have meant otherwise

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        verdict = "right" if self.ok else (f"wrong: {self.diagnosis.kind}" if self.diagnosis else "wrong")
        return f"<CheckResult dL/d{self.param.name} {verdict}>"

    def report(self) -> str:
        """The readable verdict (what an autograder shows a student)."""
        return report(self)

    __str__ = report
