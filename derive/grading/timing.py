"""How long grading takes: ``derive check`` of every built-in network from the command line (the
process start included), and a class of students' submissions of a 5-question assignment graded
with one derivation per question.

    python -m derive.grading.timing [--students 100] [--out output/bench]

writes ``grading.md`` (a generated file) and prints it. The submissions cycle through answers
that are right, wrong in one slip (each of the common ones), unparsable and missing, so the batch
takes the time a real class does: a wrong answer costs more than a right one (its diagnosis).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..checker.check import check
from ..examples import catalogue
from ..render.templates import GENERATED_MARK
from . import Assignment, grade

# The assignment: (name, network, wrt, points, the answers students give, cycled through)
QUESTIONS = [
    ("dL/dw2", "seed_000_bce", "w2", 2, ["h^T (p - y)/N", "$h^\\top (p - y)$", "(p - y)/N", "h (p - y)^T/N",
                                         "h^T dL/dz", None, "h^T (p - y"]),
    ("dL/db", "seed_000_bce", "b", 1, [r"\frac{1}{N} \sum_i (p_i - y_i)", "p - y", "1^T (p - y)",
                                       "1^T dL/dz", "sum_rows(p - y)/N"]),
    ("dL/dw1", "seed_000_bce", "w1", 3, [r"X^\top \left( \frac{\partial L}{\partial z} w_2^\top \odot \mathbb{1}[a > 0] \right)",
                                         "X^T (dL/dz w2^T)", "X dL/da", "X^T dL/da", "(dL/da)^T X", None]),
    ("dL/dW1 (sigmoid)", "seed_001_sigmoid_between", "W1", 2, ["X^T (dL/dyhat W2^T ⊙ A ⊙ (1 - A))",
                                                             "X^T dL/dyhat W2^T ⊙ sigmoid'(Z)",
                                                             "X^T dL/dyhat W2^T", "X^T (dL/dyhat W2^T ⊙ σ'(Z))"]),
    ("dL/dW1 (gelu MLP)", "mlp3_gelu", "W1", 2, ["X^T (dL/dZ2 W2^T ⊙ gelu'(Z1))", "X^T dL/dZ1",
                                                 "X^T (dL/dZ2 W2^T)", "dL/dZ1", "X^T (dL/dH1 ⊙ gelu(Z1))"]),
]


def assignment_toml() -> str:
    blocks = ['title = "Timing: 5 questions"\npartial = { factor = 0.5, transpose = 0.5 }\n']
    for name, network, wrt, points, _ in QUESTIONS:
        blocks.append(f'[[question]]\nname = "{name}"\nnetwork = "{network}"\nwrt = "{wrt}"\npoints = {points}\n')
    return "\n".join(blocks)


def answers_toml(student: int) -> str:
    lines = []
    for k, (name, *_, answers) in enumerate(QUESTIONS):
        answer = answers[(student + k) % len(answers)]
        if answer is not None:
            lines.append(f"{toml_string(name)} = {toml_string(answer)}")
    return "\n".join(lines) + "\n"


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def time_batch(folder: Path, students: int) -> dict:
    """CPU and wall time of one Assignment grading ``students`` submissions (one derivation per question)."""
    (folder / "hw.toml").write_text(assignment_toml(), encoding="utf-8")
    for s in range(students):
        (folder / f"s{s}").mkdir(exist_ok=True)
        (folder / f"s{s}" / "answers.toml").write_text(answers_toml(s), encoding="utf-8")
    wall, cpu = time.perf_counter(), time.process_time()
    assignment = Assignment(folder / "hw.toml")
    per_student, scores = [], []
    for s in range(students):
        start = time.perf_counter()
        scores.append(grade(assignment, folder / f"s{s}")["score"])
        per_student.append(time.perf_counter() - start)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "first": per_student[0],
            "median": statistics.median(per_student[1:] or per_student), "max": max(per_student),
            "mean_score": statistics.mean(scores)}


def command_time(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``derive`` command in a fresh process (the interpreter's start included)."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "derive.cli", *args], check=False, capture_output=True)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def check_times() -> list[tuple]:
    """Per built-in network (its first parameter): a right answer (the derived gradient as text) and a
    wrong one (twice it, which is diagnosed), each checked by ``derive check`` in a fresh process."""
    rows = []
    for name, example in catalogue().items():
        param = example.wrt[0]
        derived = check("0", example.loss, param, names=example.names).derived
        right = command_time(["check", name, "--wrt", param.name, "--hand", derived])
        wrong = command_time(["check", name, "--wrt", param.name, "--hand", f"2 ({derived})"])
        rows.append((name, param.name, *right, *wrong))
    return rows


def report(students: int) -> str:
    with tempfile.TemporaryDirectory(prefix="derive-grading-bench-") as scratch:
        batch = time_batch(Path(scratch), students)
        (Path(scratch) / "one").mkdir()
        (Path(scratch) / "one" / "answers.toml").write_text(answers_toml(1), encoding="utf-8")
        one_wall, one_cpu = command_time(["grade", str(Path(scratch) / "hw.toml"), "--submission",
                                          str(Path(scratch) / "one"), "--results", str(Path(scratch) / "r.json")])
    lines = [f"## derive check of every built-in network (a fresh process each; cores: {os.cpu_count()})", "",
             "| network | wrt | right: wall s | CPU s | wrong: wall s | CPU s |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {p} | {rw:.2f} | {rc:.2f} | {ww:.2f} | {wc:.2f} |" for n, p, rw, rc, ww, wc in check_times()]
    lines += ["", f"## A batch of {students} students, 5 questions (one derivation per question)", "",
              "| what | seconds |", "|---|---|",
              f"| the whole batch, wall | {batch['wall']:.1f} |", f"| the whole batch, CPU | {batch['cpu']:.1f} |",
              f"| first student (derives the questions) | {batch['first']:.2f} |",
              f"| each further student, median | {batch['median']:.2f} |", f"| slowest student | {batch['max']:.2f} |",
              f"| one `derive grade` from the command line (one student, process start included), wall | {one_wall:.2f} |",
              f"| the same, CPU | {one_cpu:.2f} |", "",
              f"mean score {batch['mean_score']:.2f} of 10 (the answers cycle through right, wrong, unparsable and missing)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derive.grading.timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100, help="submissions in the batch (default 100)")
    parser.add_argument("--out", default="output/bench", help="folder for grading.md (default output/bench)")
    args = parser.parse_args(argv)
    table = report(args.students)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grading.md").write_text(f"<!-- {GENERATED_MARK} (python -m derive.grading.timing); do not edit -->\n"
                                    f"{table}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
