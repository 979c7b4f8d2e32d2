"""The GPU run computes every experiment; its phases stop at their time limit, with every
process they started."""

import os
import sys
import time
from pathlib import Path

from gblend import experiments
from gblend.fullrun import EXPERIMENTS, run_phase


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return False
    return "zombie" not in status.read_text()  # killed, waiting to be reaped


def test_phase_is_stopped_at_its_limit_with_its_children(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    sleeper = "import time; time.sleep(60)"
    child = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-c', {sleeper!r}]); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); p.wait()"
    )
    started = time.perf_counter()
    phase = run_phase("sleep", [sys.executable, "-c", child], limit_s=6)
    assert phase.returncode is None
    assert time.perf_counter() - started < 30
    grandchild = int(pidfile.read_text())
    deadline = time.time() + 5
    while _alive(grandchild) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), f"process {grandchild} outlived its phase ({os.getpid()})"


def test_phase_reports_exit_status_and_skips_without_time():
    assert run_phase("ok", [sys.executable, "-c", "pass"], limit_s=30).returncode == 0
    assert run_phase("fail", [sys.executable, "-c", "raise SystemExit(3)"], 30).returncode == 3
    skipped = run_phase("late", [sys.executable, "-c", "pass"], limit_s=1)
    assert skipped.returncode is None and skipped.seconds == 0


def test_full_run_computes_every_experiment_once():
    # the README promises that one call computes every full-scale grid not yet committed
    assert sorted(EXPERIMENTS) == sorted(experiments.EXPERIMENTS)
