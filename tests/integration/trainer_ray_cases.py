"""The Ray Train runner's cases, run by test_trainer_ray.py in a pytest process of
their own (a Ray driver's teardown can end its process before pytest reports)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.trainer.job import Fact, train_adapter
from shared.adapters.blob_fs import FileBlobStore
from shared.lora.manifest import AdapterManifest
from shared.settings import Settings

FACTS = [
    Fact("c1", 1, "Zorvik keeps bees in Quenholt."),
    Fact("c2", 3, "Mira's boat is painted teal."),
    Fact("c3", 1, "The lighthouse of Brask was built in 1871."),
]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train")
    from tests.integration.ray_support import bounded

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024)
    try:
        yield
    finally:
        bounded(ray.shutdown, "ray.shutdown")


def settings(**trainer: Any) -> Settings:
    base = {
        "runner": "ray",
        "num_workers": 1,
        "cpus_per_worker": 1,
        "learning_rate": 1e-2,
        "epochs": 30,
        "batch_size": 4,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "base_samples": 0.0,
        "max_control_ppl_increase": 1.0,
        "progress_every_steps": 10,
    }
    return Settings(inference={"model": "tiny"}, trainer={**base, **trainer})  # type: ignore[arg-type]


def test_ray_runner_trains_saves_and_reports_progress(ray_local: None, tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    seen: list[tuple[str, float]] = []
    out = train_adapter(
        settings(),
        blobs,
        "t1",
        "ns1",
        FACTS,
        name="facts",
        version="1",
        progress=lambda m, f: seen.append((m, f)),
    )
    assert out.accepted, out.reason
    assert out.metrics["recall_after"] == 1.0
    assert out.hyperparameters["runner"] == "ray"
    assert out.manifest_key is not None
    manifest = AdapterManifest.from_json(blobs.get("t1", out.manifest_key))
    assert manifest.data_size == out.data_size == 15
    # Progress from the Ray worker reached the driver's callback.
    assert any("training step 10/" in m for m, _ in seen), seen


def test_ray_runner_two_workers_ddp(ray_local: None, tmp_path: Path) -> None:
    out = train_adapter(
        settings(num_workers=2, epochs=60, min_recall_after=0.0, min_recall_gain=0.0),
        FileBlobStore(tmp_path),
        "t1",
        "ns1",
        FACTS,
        name="facts",
        version="2",
    )
    assert out.accepted and out.hyperparameters["num_workers"] == 2
    assert out.metrics["steps"] > 0
