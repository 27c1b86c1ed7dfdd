"""Grading a whole assignment into Gradescope's autograder results (``derive grade``).

An assignment is a TOML file with one ``[[question]]`` table per question::

    title = "Backpropagation, homework 3"       # optional
    partial = { factor = 0.5 }                   # optional: credit per diagnosis kind, every question

    [[question]]
    name = "dL/dw2"                              # the key of the answer in a student's answers.toml
    network = "seed_000_bce"                     # a built-in network, or a network file's path
    wrt = "w2"                                   # (relative to the TOML file)
    points = 2
    dims = { N = 5 }                             # optional: the sizes to compare at
    partial = { transpose = 0.25 }               # optional: this question's credit per diagnosis kind
    answer = "h^T (p - y)/N"                     # optional: the reference answer, for --check

A submission is a folder holding ``answers.toml`` (question name -> answer text). Each question's
network is derived once (:class:`Assignment` keeps one checker view per question) and every
student's answer is checked in it (:func:`derive.check` given the view). A right answer gets
the points; a wrong one the ``partial`` fraction of them for its diagnosis' kind, else 0; a missing
answer, one that does not parse, and a question whose network fails get 0 with a message saying
which. :func:`grade` returns Gradescope's results (``score``, ``tests``: ``name``, ``score``,
``max_score``, ``output``) as a dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..checker.check import check, parameter
from ..checker.diagnoses import DIAGNOSES
from ..checker.network import NetworkView, hiding_sizes
from ..errors import AssignmentError, DeriveError, ParseError
from ..examples import catalogue, get
from ..examples.files import load_network_file

ANSWERS = "answers.toml"
QUESTION_KEYS = {"name", "network", "wrt", "points", "dims", "partial", "answer"}
TOP_KEYS = {"title", "partial", "question"}
UNKNOWN_SHOWN = 10      # answers to no question named in the results


@dataclass(frozen=True)
class Question:
    """One ``[[question]]`` of an assignment."""

    name: str
    network: str
    wrt: str
    points: float
    dims: Mapping = field(default_factory=dict)
    partial: Mapping = field(default_factory=dict)     # diagnosis kind -> fraction of the points
    answer: str | None = None


# --- reading the assignment -----------------------------------------------------------------------------

def _load_toml(path: Path, error: type[DeriveError], label: str) -> dict:
    """A TOML file read with the standard library's tomllib (Python 3.11), or tomli, its backport."""
    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10: pyproject.toml installs tomli there
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{label} is not valid TOML: {problem}") from None

def _fail(path: Path, where: str, message: str) -> AssignmentError:
    return AssignmentError(f"{path}: {where}: {message}")


def _partial(path: Path, where: str, table) -> dict:
    if not isinstance(table, dict):
        raise _fail(path, where, "partial must be a table of diagnosis kind = fraction of the points")
    for kind, fraction in table.items():
        if kind not in DIAGNOSES:
            raise _fail(path, where, f"partial credit for {kind!r}, which is no diagnosis; the kinds: "
                        f"{', '.join(DIAGNOSES)}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise _fail(path, where, f"partial.{kind} must be a fraction of the points from 0 to 1, got {fraction!r}")
    return dict(table)


def _question(path: Path, k: int, table, defaults: dict) -> Question:
    where = f"question {k + 1}"
    if not isinstance(table, dict):
        raise _fail(path, where, "each [[question]] must be a table")
    if isinstance(table.get("name"), str):
        where = f"question {k + 1} ({table['name']!r})"
    unknown = sorted(set(table) - QUESTION_KEYS)
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(unknown)}; a question has {', '.join(sorted(QUESTION_KEYS))}")
    for key in ("name", "network", "wrt"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise _fail(path, where, f"{key} must be given as text")
    points = table.get("points")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points < math.inf:
        raise _fail(path, where, f"points must be a number of points, 0 or more (and finite), got {points!r}")
    dims = table.get("dims", {})
    if not isinstance(dims, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                             for v in dims.values()):
        raise _fail(path, where, "dims must be a table of size = positive integer, as dims = { N = 5 }")
    answer = table.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise _fail(path, where, "answer (the reference answer) must be text")
    partial = {**defaults, **_partial(path, where, table.get("partial", {}))}
    return Question(table["name"], table["network"], table["wrt"], points, dims, partial, answer)


def read_assignment(path: Path) -> tuple[str, list[Question]]:
    """The title and questions of an assignment file; an :class:`AssignmentError` naming what is wrong."""
    if not path.is_file():
        raise AssignmentError(f"assignment file {str(path)!r} does not exist")
    data = _load_toml(path, AssignmentError, str(path))
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(path, "top level", f"unknown key(s) {', '.join(unknown)}; an assignment has title, partial "
                    "and [[question]] tables")
    tables = data.get("question")
    if not isinstance(tables, list) or not tables:
        raise _fail(path, "top level", "no [[question]] tables")
    defaults = _partial(path, "top level", data.get("partial", {}))
    questions = [_question(path, k, table, defaults) for k, table in enumerate(tables)]
    names = [q.name for q in questions]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(path, "top level", f"question name(s) used twice: {', '.join(twice)}")
    title = data.get("title", path.stem)
    return str(title), questions


# --- the assignment, each question derived once ------------------------------------------------------------

class Assignment:
    """An assignment read from its TOML file, with one checker view (one derivation) per question,
    made on first use and kept for every submission graded after."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.title, self.questions = read_assignment(self.path)
        self._views: dict[str, NetworkView | DeriveError] = {}

    def view(self, question: Question) -> NetworkView:
        """The question's network derived for its parameter; a DeriveError saying what failed."""
        if question.name not in self._views:
            try:
                self._views[question.name] = self._make_view(question)
            except DeriveError as error:
                self._views[question.name] = error
        found = self._views[question.name]
        if isinstance(found, DeriveError):
            raise found
        return found

    def _make_view(self, question: Question) -> NetworkView:
        if question.network in catalogue():
            network = get(question.network)
        else:
            network = load_network_file(self.path.parent / question.network)
        params = {p.name: p for p in network.wrt}     # or another matrix of the loss (an input X)
        try:
            param = parameter(network.loss, params.get(question.wrt, question.wrt))
        except DeriveError as error:
            raise AssignmentError(f"{network.name}: {error}") from None
        return NetworkView(network.loss, param, network.names, question.dims or None)

    def grade(self, answers: Mapping, unreadable: str | None = None) -> dict:
        """Gradescope's results for one student's answers (question name -> answer text);
        ``unreadable`` says why there are none (no answers.toml, or not TOML)."""
        tests = [self._grade_one(q, answers.get(q.name), unreadable) for q in self.questions]
        total = sum(t["score"] for t in tests)
        most = sum(t["max_score"] for t in tests)
        output = f"{self.title}: {_points(total)} of {_points(most)} points"
        unknown = sorted(set(answers) - {q.name for q in self.questions})
        if unknown:   # named up to a few: a file of thousands of keys must not fill the results
            named = ", ".join(map(repr, unknown[:UNKNOWN_SHOWN]))
            more = f" and {len(unknown) - UNKNOWN_SHOWN} more" if len(unknown) > UNKNOWN_SHOWN else ""
            output += (f"\nderive: {ANSWERS} answers no question named {named}{more}; "
                       f"the questions: {', '.join(repr(q.name) for q in self.questions)}")
        return {"score": _points(total), "output": output, "tests": tests}

    def _grade_one(self, question: Question, answer, unreadable: str | None) -> dict:
        def entry(score: float, output: str) -> dict:
            return {"name": question.name, "score": _points(score), "max_score": _points(question.points),
                    "output": output}
        if answer is None:
            return entry(0, f"derive: no answer to {question.name!r}: {unreadable}" if unreadable
                         else f"derive: no answer to {question.name!r} in {ANSWERS}")
        if not isinstance(answer, str):
            return entry(0, f"derive: the answer to {question.name!r} in {ANSWERS} must be text (in quotes), "
                            f"not a {type(answer).__name__}")
        try:
            view = self.view(question)
        except DeriveError as error:
            return entry(0, f"derive: this question could not be graded (a problem of the assignment, not of "
                            f"your answer; tell your instructor): {error}")
        try:
            result = check(answer, view.loss, view.param, dims=question.dims or None, view=view)
        except ParseError as error:
            return entry(0, f"derive: your answer does not parse: {error}")
        except DeriveError as error:
            return entry(0, f"derive: your answer could not be checked: {error}")
        except Exception as error:  # noqa: BLE001 - a bug of derive must not cost the class its results
            return entry(0, f"derive: internal error while checking this answer ({type(error).__name__}: {error}); "
                            "this is a bug in derive, not a verdict on your answer: tell your instructor")
        if result:
            return entry(question.points, result.report())
        kind = result.diagnosis.kind if result.diagnosis is not None else None
        fraction = question.partial.get(kind, 0)
        plural = "" if question.points == 1 else "s"
        credit = (f"\npartial credit for {kind}: {_points(fraction * question.points)} of "
                  f"{_points(question.points)} point{plural}") if fraction else ""
        return entry(fraction * question.points, result.report() + credit)

    def problems(self) -> list[str]:
        """What would go wrong before the assignment goes to students: a network that does not
        load, a parameter it does not have, dims that can hide a constant factor, a reference answer
        that does not pass. Empty when fine."""
        found = []
        for q in self.questions:
            try:
                view = self.view(q)
            except DeriveError as error:
                found.append(f"{q.name}: {error}")
                continue
            hiding = hiding_sizes(q.dims)
            if hiding:   # an answer off by 1/N is equal to the gradient at N = 1: it would get the points
                found.append(f"{q.name}: dims {', '.join(hiding)} can hide a constant factor (2/N is 1 at N=2, "
                             "N/D is 1 at N=D), so an answer off by it would get the points; leave dims out or give "
                             "distinct odd primes")
            if q.answer is None:
                continue
            try:
                result = check(q.answer, view.loss, view.param, dims=q.dims or None, view=view)
            except DeriveError as error:
                found.append(f"{q.name}: the reference answer does not parse: {error}")
                continue
            if not result:
                found.append(f"{q.name}: the reference answer is wrong:\n{result.report()}")
        return found


def _points(value: float) -> float | int:
    """Points as Gradescope shows them: whole numbers as integers, others to 4 decimals."""
    value = round(float(value), 4)
    return int(value) if value == int(value) else value


def read_answers(submission: str | Path) -> tuple[dict, str | None]:
    """A submission folder's answers.toml as a dict, and why it could not be read (None when it
    could): the student's problem, so every question then scores 0 saying why."""
    path = Path(submission) / ANSWERS
    if not path.is_file():
        return {}, f"the submission has no {ANSWERS}"
    try:
        return _load_toml(path, ParseError, ANSWERS), None
    except ParseError as error:
        return {}, str(error)


def grade(assignment: str | Path | Assignment, submission: str | Path) -> dict:
    """Grade one student's submission folder: Gradescope's results as a dict (``json.dump`` it to
    results.json). An :class:`AssignmentError` when the assignment file itself is bad."""
    if not isinstance(assignment, Assignment):
        assignment = Assignment(assignment)
    return assignment.grade(*read_answers(submission))
