"""derive grade: an assignment's submission graded into Gradescope's results.json.

The results of a submission with right, wrong (with partial credit), unparsable and missing answers
are compared with the exact expected JSON; each verdict behind a score is the independent truth's
(tests/hand_truth.py); a bad assignment exits 2; answers that try to run code run nothing; one
derivation per question serves every student.
"""

import builtins
import json
import re
import textwrap
from pathlib import Path

import pytest
import sympy
from sympy.parsing import sympy_parser

import derive.grading
from derive.cli import main
from derive.examples import get
from derive.grading import Assignment, grade

ASSIGNMENT = """\
title = "Homework 3"
partial = { factor = 0.5 }

[[question]]
name = "w2"
network = "seed_000_bce"
wrt = "w2"
points = 2
answer = "h^T (p - y)/N"

[[question]]
name = "b"
network = "seed_000_bce"
wrt = "b"
points = 1

[[question]]
name = "w1"
network = "seed_000_bce"
wrt = "w1"
points = 3
partial = { transpose = 0.25 }

[[question]]
name = "linreg w"
network = "seed_001_linreg_batch"
wrt = "w"
points = 2

[[question]]
name = "linreg b"
network = "seed_001_linreg_batch"
wrt = "b"
points = 2
"""

ANSWERS = """\
w2 = '$h^\\top (p - y)/N$'
b = '1^T (p - y)'
w1 = "((p - y)/N w2^T ⊙ 1[a > 0])^T X"
"linreg w" = "2/N X^T (yhat - y"
bonus = "42"
"""

EXPECTED = json.loads((Path(__file__).parent / "grading_results.json").read_text(encoding="utf-8"))

# (question, network, parameter, the student's answer, the independent verdict it must get)
VERDICTS = [
    ("w2", "seed_000_bce", "w2", "$h^\\top (p - y)/N$", "right"),
    ("b", "seed_000_bce", "b", "1^T (p - y)", "wrong"),
    ("w1", "seed_000_bce", "w1", "((p - y)/N w2^T ⊙ 1[a > 0])^T X", "wrong"),
]


@pytest.fixture
def homework(tmp_path):
    (tmp_path / "hw.toml").write_text(ASSIGNMENT, encoding="utf-8")
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "answers.toml").write_text(ANSWERS, encoding="utf-8")
    return tmp_path


def test_a_submission_is_graded_into_the_exact_results(homework, capsys):
    results = homework / "results" / "results.json"
    code = main(["grade", str(homework / "hw.toml"), "--submission", str(homework / "student"), "--results", str(results)])
    assert code == 0
    assert json.loads(results.read_text(encoding="utf-8")) == EXPECTED
    assert "wrote" in capsys.readouterr().out


def test_the_python_function_returns_the_same_results(homework):
    assert grade(homework / "hw.toml", homework / "student") == EXPECTED


@pytest.mark.parametrize(("question", "network", "wrt", "answer", "verdict"), VERDICTS)
def test_each_score_rests_on_the_independent_verdict(question, network, wrt, answer, verdict):
    pytest.importorskip("torch", reason="autograd gives the independent truth's gradients")
    from .hand_truth import HandTruth
    example = get(network)
    truth = HandTruth(example.loss, next(p for p in example.wrt if p.name == wrt), example.names)
    assert truth.verdict(answer) == verdict
    entry = next(t for t in EXPECTED["tests"] if t["name"] == question)
    assert (entry["score"] == entry["max_score"]) == (verdict == "right")


def test_one_derivation_per_question_serves_every_student(homework, monkeypatch):
    made = []
    original = derive.grading.NetworkView
    monkeypatch.setattr(derive.grading, "NetworkView", lambda *a: made.append(a) or original(*a))
    assignment = Assignment(homework / "hw.toml")
    for _ in range(3):
        assert grade(assignment, homework / "student") == EXPECTED
    assert len(made) == 4           # the questions the student answered (a missing answer derives nothing)


def test_a_submission_without_answers_scores_0_saying_why(homework):
    empty = homework / "nobody"
    empty.mkdir()
    results = grade(homework / "hw.toml", empty)
    assert results["score"] == 0
    assert {t["output"] for t in results["tests"]} == {
        f"derive: no answer to {q!r}: the submission has no answers.toml" for q in ("w2", "b", "w1", "linreg w", "linreg b")}


def test_answers_that_are_not_toml_score_0_saying_why(homework):
    (homework / "student" / "answers.toml").write_text("w2 = h^T (p - y)", encoding="utf-8")
    results = grade(homework / "hw.toml", homework / "student")
    assert results["score"] == 0
    assert all("answers.toml is not valid TOML" in t["output"] for t in results["tests"])


def test_answers_to_no_question_are_named_briefly(homework):
    answers = ANSWERS + "".join(f'extra{k} = "x"\n' for k in range(10_000))
    (homework / "student" / "answers.toml").write_text(answers, encoding="utf-8")
    results = grade(homework / "hw.toml", homework / "student")
    assert results["tests"] == EXPECTED["tests"]
    assert "named 'bonus', 'extra0', 'extra1', " in results["output"] and "and 9991 more;" in results["output"]
    assert len(results["output"]) < 1000


def test_a_failing_network_file_scores_0_saying_which(homework):
    (homework / "broken.py").write_text("raise RuntimeError('oops')\n", encoding="utf-8")
    (homework / "hw.toml").write_text(ASSIGNMENT.replace('network = "seed_001_linreg_batch"\nwrt = "w"',
                                                         'network = "broken.py"\nwrt = "w"'), encoding="utf-8")
    results = grade(homework / "hw.toml", homework / "student")
    entry = next(t for t in results["tests"] if t["name"] == "linreg w")
    assert entry["score"] == 0
    assert "could not be graded" in entry["output"] and "broken.py" in entry["output"] and "oops" in entry["output"]
    assert results["score"] == EXPECTED["score"]


def test_a_network_file_is_found_beside_the_assignment(homework):
    (homework / "linreg.py").write_text(textwrap.dedent("""\
        from sympy import MatrixSymbol, OneMatrix, Symbol
        import derive
        N = Symbol("N", integer=True, positive=True)
        X, w, b, y = MatrixSymbol("X", N, 3), MatrixSymbol("w", 3, 1), MatrixSymbol("b", 1, 1), MatrixSymbol("y", N, 1)
        yhat = X * w + OneMatrix(N, 1) * b
        loss, wrt, names = derive.mse(yhat, y), [w, b], {"yhat": yhat}
        """), encoding="utf-8")
    (homework / "hw.toml").write_text(ASSIGNMENT.replace('"seed_001_linreg_batch"', '"linreg.py"'), encoding="utf-8")
    (homework / "student" / "answers.toml").write_text('"linreg w" = "2/N X^T (yhat - y)"\n', encoding="utf-8")
    results = grade(homework / "hw.toml", homework / "student")
    assert next(t for t in results["tests"] if t["name"] == "linreg w")["score"] == 2


BAD_ASSIGNMENTS = [
    # (what the TOML says, a part of the message)
    ("[[question]\nname = 'x'", "is not valid TOML"),
    ("title = 'empty'", "no [[question]] tables"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'", "points must be a number"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = inf", "points must be a number"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = nan", "points must be a number"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = 1\npoint = 2", "unknown key(s) point"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\npoints = 1", "wrt must be given as text"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = 1\npartial = { factr = 0.5 }",
     "'factr', which is no diagnosis"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = 1\npartial = { factor = 2 }",
     "fraction of the points from 0 to 1"),
    ("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = 1\ndims = { N = 0 }",
     "dims must be a table of size = positive integer"),
    (("[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'w2'\npoints = 1\n"
     "[[question]]\nname = 'a'\nnetwork = 'seed_000_bce'\nwrt = 'b'\npoints = 1"), "used twice: a"),
    ("[[questions]]\nname = 'a'", "unknown key(s) questions"),
]


@pytest.mark.parametrize(("toml", "message"), BAD_ASSIGNMENTS, ids=[m for _, m in BAD_ASSIGNMENTS])
def test_a_bad_assignment_exits_2_saying_what_is_wrong(homework, capsys, toml, message):
    (homework / "hw.toml").write_text(toml, encoding="utf-8")
    results = homework / "results.json"
    code = main(["grade", str(homework / "hw.toml"), "--submission", str(homework / "student"), "--results", str(results)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("derive: ") and message in err, err
    assert not results.exists()


def test_check_passes_a_sound_assignment(homework, capsys):
    assert main(["grade", str(homework / "hw.toml"), "--check"]) == 0
    assert "every reference answer passes" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "message"), [
    (('answer = "h^T (p - y)/N"', 'answer = "h^T (p - y)"'), "w2: the reference answer is wrong"),
    (('answer = "h^T (p - y)/N"', 'answer = "h^T (p - y"'), "w2: the reference answer does not parse"),
    (('answer = "h^T (p - y)/N"', 'answer = "h^T (p - y)/N"\ndims = { N = 1 }'),
     "w2: dims N=1 can hide a constant factor"),   # h^T (p - y), off by 1/N, would get the points
    (('wrt = "w1"', 'wrt = "W1"'), "w1: seed_000_bce: wrt must be one of the loss's matrices (X, b, w1, w2, y), got 'W1'"),
    (('network = "seed_001_linreg_batch"\nwrt = "w"', 'network = "nets/missing.py"\nwrt = "w"'),
     "linreg w: network file"),
])
def test_check_refuses_an_assignment_that_would_fail_students(homework, capsys, change, message):
    (homework / "hw.toml").write_text(ASSIGNMENT.replace(*change), encoding="utf-8")
    assert main(["grade", str(homework / "hw.toml"), "--check"]) == 2
    assert f"derive: {message}" in capsys.readouterr().err


ATTACKS = [
    "__import__('os').system('touch {marker}')",
    r"\input{{{marker}}}",
    "exec(\"open('{marker}', 'w')\")",
    "open('{marker}', 'w')",
    "X^T G; import os",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_answer_that_tries_to_run_code_runs_nothing(homework, monkeypatch, attack):
    marker = homework / "pwned"
    text = attack.format(marker=marker)
    (homework / "student" / "answers.toml").write_text(f"w2 = {json.dumps(text)}\n", encoding="utf-8")
    assignment = Assignment(homework / "hw.toml")
    sources = []
    for name in ("eval", "exec", "compile"):    # SymPy's lambdify compiles its own code; never the answer
        original = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _o=original, **k: (sources.append(str(a[:1])), _o(*a, **k))[1])
    monkeypatch.setattr(sympy_parser, "parse_expr", lambda *a, **k: sources.append(f"parse_expr{a}"))
    monkeypatch.setattr(sympy, "sympify", lambda *a, **k: sources.append(f"sympify{a}"))
    results = grade(assignment, homework / "student")
    monkeypatch.undo()
    assert not marker.exists()
    assert not [s for s in sources if "pwned" in s or "parse_expr" in s or "sympify" in s]
    entry = next(t for t in results["tests"] if t["name"] == "w2")
    assert entry["score"] == 0 and entry["output"].startswith("derive: your answer does not parse:")


def test_the_readme_assignment_passes_its_check_and_grades_as_shown(tmp_path):
    """README's teacher section: its TOML, its answers.toml and the results.json it shows."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Grading an assignment (for teachers)\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(toml|json)\n(.*?)```", section, flags=re.DOTALL)
    assignment, answers, shown = (text for _, text in blocks)
    (tmp_path / "hw3.toml").write_text(assignment, encoding="utf-8")
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "answers.toml").write_text(answers, encoding="utf-8")
    assert Assignment(tmp_path / "hw3.toml").problems() == []
    assert grade(tmp_path / "hw3.toml", tmp_path / "submission") == json.loads(shown)


def test_a_bug_while_checking_one_answer_scores_it_0_saying_so_and_grades_the_rest(homework, monkeypatch):
    original = derive.grading.check

    def broken(answer, loss, wrt, **options):
        if wrt.name == "w1":
            raise ZeroDivisionError("division by zero")
        return original(answer, loss, wrt, **options)

    monkeypatch.setattr(derive.grading, "check", broken)
    results = grade(homework / "hw.toml", homework / "student")
    entry = next(t for t in results["tests"] if t["name"] == "w1")
    assert entry["score"] == 0 and "internal error while checking this answer (ZeroDivisionError" in entry["output"]
    others = [t for t in results["tests"] if t["name"] != "w1"]
    assert others == [t for t in EXPECTED["tests"] if t["name"] != "w1"]


def test_grade_without_a_submission_or_check_says_what_it_needs(homework, capsys):
    assert main(["grade", str(homework / "hw.toml")]) == 2
    assert capsys.readouterr().err.startswith("derive: grade needs --submission DIR and --results FILE")
