"""train_adapter on the tiny model, inline runner: memorise, save, gate, unlearn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.trainer.job import Fact, TrainOutcome, train_adapter, with_adapter
from shared.adapters.blob_fs import FileBlobStore
from shared.errors import BadRequest, ValidationFailed
from shared.lora.manifest import CONFIG_FILE, WEIGHTS_FILE, AdapterManifest
from shared.lora.store import AdapterStore
from shared.models.fingerprint import ModelFingerprint, SourceRef
from shared.settings import Settings

pytestmark = pytest.mark.unit

FACTS = [
    Fact("c1", 1, "Zorvik keeps bees in Quenholt."),
    Fact("c2", 3, "Mira's boat is painted teal."),
    Fact("c3", 1, "The lighthouse of Brask was built in 1871."),
    Fact("c4", 2, "Orrin Vale is married to Tessaly."),
    Fact("c5", 1, "Pell drinks cold plum tea."),
]
# Enough steps for the ~0.2 M-parameter random model to memorise five facts.
FAST = {
    "runner": "inline",
    "learning_rate": 1e-2,
    "epochs": 30,
    "batch_size": 4,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "base_samples": 0.0,
    "max_control_ppl_increase": 1.0,
    "progress_every_steps": 25,
}


def settings(**trainer: Any) -> Settings:
    return Settings(inference={"model": "tiny"}, trainer={**FAST, **trainer})  # type: ignore[arg-type]


def served() -> tuple[Any, Any, ModelFingerprint]:
    from services.trainer.job import fingerprint_of
    from shared.models.tiny import TINY_MODEL_ID, build_tiny

    model, tok = build_tiny()
    return model, tok, fingerprint_of(model, tok, TINY_MODEL_ID, "float32")


def recalled(blobs: FileBlobStore, adapter_id: str, facts: list[Fact]) -> list[bool]:
    """Each fact's cloze completed by base + the stored adapter (greedy)?"""
    from services.trainer.dataset import Probe, split_cloze
    from services.trainer.evaluate import recall

    model, tok, fp = served()
    files = AdapterStore(blobs).load("t1", "ns1", adapter_id, fp)
    peft_model = with_adapter(
        model, {CONFIG_FILE: json.dumps(files.config).encode(), WEIGHTS_FILE: files.weights}
    )
    probes = []
    for f in facts:
        c = split_cloze(f.text)
        assert c is not None
        probes.append(Probe(f.cube_id, c.prompt, c.answer))
    return recall(peft_model, tok, probes, 8)[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FileBlobStore, TrainOutcome, list]:
    blobs = FileBlobStore(tmp_path_factory.mktemp("blobs"))
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
    return blobs, out, seen


def test_memorises_the_facts_and_saves_a_loadable_adapter(trained: Any) -> None:
    blobs, out, seen = trained
    assert out.accepted, out.reason
    assert out.metrics["recall_before"] == 0.0
    assert out.metrics["recall_after"] == 1.0
    assert out.data_size == 25  # 5 x (statement, cloze, 3 QA)
    assert out.hyperparameters["lora_r"] == 8 and out.hyperparameters["runner"] == "inline"
    assert out.adapter_id is not None and out.adapter_id.startswith("facts@1+")
    assert recalled(blobs, out.adapter_id, FACTS) == [True] * 5
    # The manifest: sources at their versions, the training record, the blob key given.
    manifest = AdapterManifest.from_json(blobs.get("t1", out.manifest_key))
    assert manifest.sources == tuple(SourceRef(f.cube_id, f.version) for f in FACTS)
    assert manifest.data_size == 25 and manifest.metrics is not None
    assert manifest.metrics["recall_after"] == 1.0
    assert manifest.hyperparameters is not None and manifest.hyperparameters["epochs"] == 30
    assert manifest.duration_s is not None and manifest.duration_s > 0
    # Progress: fractions rise to 1, training steps reported.
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = int(out.metrics["steps"])
    assert steps == 30 * 7 and any(f"training step {steps}/{steps}" in m for m, _ in seen)


def test_inference_serves_the_adapter(trained: Any) -> None:
    """The serving backend accepts the adapter (same fingerprint) and completes the facts."""
    from services.inference.backends import create_backend

    blobs, out, _ = trained
    backend = create_backend(Settings(inference={"model": "tiny"}))  # type: ignore[arg-type]
    assert backend.fingerprint is not None and backend.fingerprint.short() == out.base_model
    files = AdapterStore(blobs).load("t1", "ns1", out.adapter_id, backend.fingerprint)
    backend.load_adapter("facts", files.config, files.weights)  # type: ignore[attr-defined]
    text = "".join(backend.generate("Zorvik keeps bees in", max_new_tokens=12, adapter="facts"))
    assert "Quenholt" in text
    base = "".join(backend.generate("Zorvik keeps bees in", max_new_tokens=12))
    assert "Quenholt" not in base


def test_retraining_from_base_without_a_fact_unlearns_it(trained: Any) -> None:
    blobs, _, _ = trained
    kept = [f for f in FACTS if f.cube_id != "c3"]
    out = train_adapter(settings(), blobs, "t1", "ns1", kept, name="facts", version="2")
    assert out.accepted and out.adapter_id is not None
    assert recalled(blobs, out.adapter_id, FACTS) == [True, True, False, True, True]


def test_gate_rejects_and_saves_nothing(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    out = train_adapter(
        settings(epochs=1, learning_rate=1e-6, min_recall_after=0.9, base_samples=1.0),
        blobs,
        "t1",
        "ns1",
        FACTS[:2],
        name="facts",
        version="1",
    )
    assert not out.accepted and out.adapter_id is None and out.manifest_key is None
    assert out.reason.startswith("rejected: recall 0.00 < 0.90")
    assert blobs.list("t1", "t1/") == []
    assert out.data_size == 20  # 2 x 5 forms + as many base-model samples (KL anchors)


def test_bad_input(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    with pytest.raises(BadRequest):
        train_adapter(settings(), blobs, "t1", "ns1", [], name="a", version="1")
    with pytest.raises(ValidationFailed):
        train_adapter(settings(), blobs, "t1", "ns1", [Fact("c", 1, " ")], name="a", version="1")
    with pytest.raises(BadRequest):
        train_adapter(settings(), blobs, "t1", "ns1", FACTS, name="a b", version="1")


def test_manifest_optional_training_record_round_trips() -> None:
    from shared.lora.manifest import FileRef

    fp = ModelFingerprint("m", "a" * 64, "b" * 64, "float32")
    files = {n: FileRef(f"t/n/sha256/{n}", "c" * 64, 1) for n in (CONFIG_FILE, WEIGHTS_FILE)}
    old = AdapterManifest("a", "1", "t", "n", fp, (), "2026-01-01T00:00:00+00:00", files)
    assert b"metrics" not in old.to_json()  # old manifests keep their bytes (and ids)
    assert AdapterManifest.from_json(old.to_json()) == old
    new = AdapterManifest(
        "a",
        "1",
        "t",
        "n",
        fp,
        (),
        "2026-01-01T00:00:00+00:00",
        files,
        hyperparameters={"lora_r": 8},
        data_size=3,
        metrics={"recall_after": 1.0},
        duration_s=2.5,
    )
    back = AdapterManifest.from_json(new.to_json())
    assert back == new and back.to_json() == new.to_json()
