"""Coursework on the harness: four assignments (solution notebooks in ``book/coursework/``),
student versions generated from them (:mod:`~gblend.coursework.student`), an autograder
(:mod:`~gblend.coursework.grading`, its checks in :mod:`~gblend.coursework.checks`) and the
book's coursework pages (:mod:`~gblend.coursework.pages`).

A notebook starts with ``setup = coursework.setup("a1", student_id, scale)``: the seeds (and,
for A2, the testbed) of that student.
"""

from gblend.coursework.assignments import ASSIGNMENTS, Assignment, StudentSetup, setup

__all__ = ["ASSIGNMENTS", "Assignment", "StudentSetup", "setup"]
