"""The grading timing (python -m derive.grading.timing): its assignment passes its own check, its
submissions are valid TOML answering the questions, and a small batch is graded and timed."""

import tomllib

from derive.grading import Assignment
from derive.grading.timing import QUESTIONS, answers_toml, assignment_toml, time_batch


def test_the_timed_assignment_and_submissions_are_what_a_class_hands_in(tmp_path):
    (tmp_path / "hw.toml").write_text(assignment_toml(), encoding="utf-8")
    assert [q.name for q in Assignment(tmp_path / "hw.toml").questions] == [q[0] for q in QUESTIONS]
    for student in range(7):
        answers = tomllib.loads(answers_toml(student))
        assert set(answers) <= {q[0] for q in QUESTIONS}
        assert all(isinstance(a, str) for a in answers.values())


def test_a_small_batch_is_graded_and_timed(tmp_path):
    timing = time_batch(tmp_path, 3)
    # times only as measured, in no order: on a loaded machine (or beside other xdist workers) a later
    # student can take longer than the first, who derives the questions
    assert timing["cpu"] > 0 and min(timing["first"], timing["median"]) > 0
    assert timing["max"] >= max(timing["first"], timing["median"])
    assert 0 <= timing["mean_score"] <= sum(q[3] for q in QUESTIONS)
