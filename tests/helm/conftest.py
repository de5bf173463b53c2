"""Fixtures of the chart tests: the pinned helm (infra/tools/helm_tool.py), renders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import PRODUCTION, REPO, Rendered, helm_template


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary, built on first use (make helm-test builds it beforehand)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "infra" / "tools" / "helm_tool.py"), "install"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., Rendered]:
    """helm template of the chart as release "rel"; AssertionError with helm's
    message when it refuses the values."""

    def render_(
        *values_files: Path,
        sets: dict[str, str] | None = None,
        strings: dict[str, str] | None = None,
    ) -> Rendered:
        result = helm_template(helm, *values_files, sets=sets, strings=strings)
        assert result.returncode == 0, result.stderr
        return Rendered([d for d in yaml.safe_load_all(result.stdout) if d])

    return render_


@pytest.fixture(scope="session")
def default(render: Callable[..., Rendered]) -> Rendered:
    return render()


@pytest.fixture(scope="session")
def production(render: Callable[..., Rendered]) -> Rendered:
    return render(PRODUCTION)
