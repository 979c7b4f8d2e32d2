"""The four assignments and what each student gets: seeds (and, for A2, a testbed) derived
from a student id, so that answers differ between students and a grader can recompute them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Solutions are the single source of truth; student versions are generated from them.
SOLUTIONS_DIR = Path("book/coursework")
STUDENTS_DIR = SOLUTIONS_DIR / "student"
# Students' seeds start above every seed the book reports (0-9) or calibrates on (1000-1001).
STUDENT_SEED_BASE = 100_000
SEED_SLOTS = 90_000  # distinct seed blocks, 10 seeds apart
SCALES = ("smoke", "cpu")  # smoke: grading and CI; cpu: the student's own run (the default)
# What the book's coursework pages show: the solutions, or (for a course) the student versions
PAGE_MODES = ("solutions", "student")
GRADING_TIMEOUT = 300  # seconds a cell may run when graded at smoke (training takes far less)


@dataclass(frozen=True)
class Assignment:
    """One assignment: its solution notebook (in :data:`SOLUTIONS_DIR`), its title, the number
    of seeds a student trains at each scale, and the real data set it uses (if any)."""

    name: str
    notebook: str
    title: str
    seeds: dict[str, int] = field(default_factory=lambda: {"smoke": 2, "cpu": 3})

    @property
    def solution(self) -> Path:
        return SOLUTIONS_DIR / self.notebook

    @property
    def student(self) -> Path:
        return STUDENTS_DIR / self.notebook


ASSIGNMENTS: dict[str, Assignment] = {
    a.name: a
    for a in (
        Assignment("a1", "a1_estimator.ipynb", "A1: the estimator, by hand"),
        Assignment("a2", "a2_make_fusion_fail.ipynb", "A2: make fusion fail"),
        Assignment("a3", "a3_super_epochs.ipynb", "A3: how long a super-epoch?"),
        Assignment("a4", "a4_new_remedy.ipynb", "A4: a remedy the paper did not try"),
    )
}


def get(name: str) -> Assignment:
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; valid: {', '.join(ASSIGNMENTS)}")
    return ASSIGNMENTS[name]


def student_number(assignment: str, student_id: str) -> int:
    """A stable number per (assignment, student): the same on every machine and Python."""
    digest = hashlib.sha256(f"{assignment}:{student_id.strip()}".encode()).hexdigest()
    return int(digest[:12], 16)


# A2's starting testbed: the synthetic set with nothing to memorise (no noise dimensions),
# where naive fusion does not fail; the student's signal levels and redundancy vary.
_A2_CHOICES: dict[str, tuple[Any, ...]] = {
    "rgb_signal": (2.2, 2.6, 3.0),
    "audio_signal": (0.8, 1.2, 1.6),
    "shared_noise": (0.5, 0.7, 0.9),
}
A2_START_FIXED = {"audio_noise_dims": 0, "flow_noise_dims": 0, "rgb_noise_dims": 0}


@dataclass(frozen=True)
class StudentSetup:
    """What one student works with: ``seeds`` (paired across methods), and for A2 the
    starting ``knobs`` of the synthetic testbed."""

    assignment: str
    student_id: str
    scale: str
    seeds: tuple[int, ...]
    knobs: dict[str, Any]

    def describe(self) -> str:
        who = f"student {self.student_id!r}" if self.student_id else "no student id (solution)"
        knobs = f", testbed {self.knobs}" if self.knobs else ""
        return f"{self.assignment} at scale {self.scale}, {who}: seeds {list(self.seeds)}{knobs}"


def setup(assignment: str, student_id: str = "", scale: str = "cpu") -> StudentSetup:
    """The seeds and knobs of one student (``""``: the solution's own)."""
    entry = get(assignment)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} for coursework; valid: {', '.join(SCALES)}")
    number = student_number(assignment, student_id)
    base = STUDENT_SEED_BASE + (number % SEED_SLOTS) * 10
    knobs: dict[str, Any] = {}
    if assignment == "a2":
        knobs = dict(A2_START_FIXED)
        for i, (name, values) in enumerate(sorted(_A2_CHOICES.items())):
            knobs[name] = values[(number >> (8 * i)) % len(values)]
    return StudentSetup(
        assignment, student_id, scale, tuple(range(base, base + entry.seeds[scale])), knobs
    )
