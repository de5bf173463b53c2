"""The trainer's Ray Train runner (trainer_ray_cases.py) in a pytest process of its own.

Why a separate process: as for the Serve cases (test_inference_serve.py), the Ray
driver's teardown can end its process with status 1 before pytest prints; in a
child process each case's result is read from its own report line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CASES = HERE / "trainer_ray_cases.py"


@pytest.mark.timeout(900)
def test_trainer_ray_cases_pass_in_their_own_process() -> None:
    import ray.train  # noqa: F401  - the trainer extra installs it; missing is a failure

    expected = len(re.findall(r"^def test_", CASES.read_text(), flags=re.M))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(CASES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    out = r.stdout + r.stderr
    passed = re.findall(r"^\S*trainer_ray_cases\.py::(\w+) PASSED", r.stdout, flags=re.M)
    assert expected >= 2 and len(passed) == expected, out[-6000:]
    assert not re.search(r" (FAILED|ERROR)\b", r.stdout), out[-6000:]
