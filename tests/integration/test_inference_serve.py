"""The Ray Serve cases (serve_cases.py) in a pytest process of their own.

Why a separate process: the Ray driver lives in the process that calls
``ray.init``, and its teardown can end that process with status 1 before pytest
prints anything (a race in Ray's core worker, seen here once in a full run and
reported by other projects); see ``ray_support.run_cases_in_own_process``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.ray_support import run_cases_in_own_process

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_serve_cases_pass_in_their_own_process() -> None:
    run_cases_in_own_process(Path(__file__).resolve().parent / "serve_cases.py")
