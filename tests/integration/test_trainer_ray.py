"""The trainer's Ray Train runner (trainer_ray_cases.py) in a pytest process of its own,
as the Serve cases are (``ray_support.run_cases_in_own_process`` says why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.ray_support import run_cases_in_own_process

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_trainer_ray_cases_pass_in_their_own_process() -> None:
    import ray.train  # noqa: F401  - the trainer extra installs it; missing is a failure

    run_cases_in_own_process(Path(__file__).resolve().parent / "trainer_ray_cases.py")
