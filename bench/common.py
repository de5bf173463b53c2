"""Helpers shared by the benchmark scripts: an embedded memgrid and statistics."""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_KEY = "bench-admin-key"


@contextmanager
def embedded_client(**overrides: Any) -> Iterator[Any]:
    """An in-process client of a fresh embedded memgrid, authenticated as a new tenant."""
    from fastapi.testclient import TestClient

    from services.embedded import build_embedded
    from shared.settings import Settings

    with tempfile.TemporaryDirectory(prefix="memgrid-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), admin_key=ADMIN_KEY, **overrides)
        app, close = build_embedded(settings)
        try:
            with TestClient(app) as client:
                r = client.post(
                    "/v1/tenants",
                    json={"name": "bench"},
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                )
                r.raise_for_status()
                client.headers["Authorization"] = f"Bearer {r.json()['api_key']}"
                yield client
        finally:
            close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
