"""``train_adapter``: a namespace's stable facts → an evaluated, gated LoRA adapter.

Steps (docs/trainer.md): load the serving base model (``inference.model``,
``inference.dtype``) and fingerprint it exactly as inference does; build the
training set (``trainer.generator``); evaluate the base (cloze recall of the
facts, control perplexity); train a fresh LoRA from the base weights
(``trainer.runner``: Ray Train or inline; never from a previous adapter, so
retraining without a fact unlearns it); evaluate base + adapter; gate on
``min_recall_after``, ``min_recall_gain`` and ``max_control_ppl_increase``; when
accepted, save through ``AdapterStore`` with the sources and the training record.
Progress goes to the log and to ``progress(message, fraction)``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.control_text import CONTROL_TEXT
from services.trainer.dataset import TrainingSet, build_training_set
from services.trainer.distill import Hyper, TrainResult, run_inline, run_ray, total_steps
from services.trainer.evaluate import base_samples, perplexity, recall
from services.trainer.generators import create_generator
from shared.errors import BadRequest, ValidationFailed
from shared.lora.manifest import check_name
from shared.lora.store import AdapterStore
from shared.models.fingerprint import ModelFingerprint, SourceRef
from shared.ports.blob import BlobStore, check_segment
from shared.ports.generator import TrainingText
from shared.settings import Settings

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float], None]  # (phase message, fraction 0..1)

# Fractions of the whole job given to each phase in progress reports.
_LOAD, _EVAL_BEFORE, _TRAIN_END, _EVAL_AFTER = 0.05, 0.15, 0.85, 0.97


@dataclass(frozen=True)
class Fact:
    cube_id: str
    version: int
    text: str


@dataclass(frozen=True)
class TrainOutcome:
    accepted: bool  # False: gated out (thresholds) -> not saved
    adapter_id: str | None  # set when accepted and saved to the BlobStore
    manifest_key: str | None  # blob key of the manifest (AdapterStore gives it)
    base_model: str  # ModelFingerprint.short()
    metrics: dict[str, float]  # recall_before, recall_after, control_ppl_*, ...
    hyperparameters: dict[str, Any]
    data_size: int
    duration_s: float
    reason: str  # human-readable: why accepted / rejected


def _check(settings: Settings, tenant: str, namespace: str, facts: Sequence[Fact]) -> None:
    check_segment("tenant", tenant)
    check_segment("namespace", namespace)
    if not facts:
        raise BadRequest("no facts to train on")
    empty = [f.cube_id for f in facts if not f.text.strip()]
    if empty:
        raise ValidationFailed(f"facts with empty text: {empty[:5]}")


def fingerprint_of(model: Any, tok: Any, model_id: str, dtype: str) -> ModelFingerprint:
    """The fingerprint inference computes for the same model (backends/hf.py)."""
    from shared.models.fingerprint import tokenizer_digest, weights_digest

    return ModelFingerprint(
        model_id=model_id,
        weights_sha256=weights_digest(model),
        tokenizer_sha256=tokenizer_digest(tok),
        dtype=dtype,
    )


def evaluate(model: Any, tok: Any, data: TrainingSet, settings: Settings) -> tuple[float, float]:
    """``(cloze recall, control perplexity)`` of ``model``."""
    t = settings.trainer
    r, _ = recall(model, tok, data.probes, t.eval_max_new_tokens)
    ppl = perplexity(model, tok, CONTROL_TEXT, t.max_seq_tokens)
    return r, ppl


def with_adapter(model: Any, files: dict[str, bytes]) -> Any:
    """``model`` with the trained adapter loaded (peft), in eval mode."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="memgrid-lora-eval-") as d:
        for fname, data in files.items():
            (Path(d) / fname).write_bytes(data)
        peft_model = PeftModel.from_pretrained(model, d)
    return peft_model.eval()


def gate(settings: Settings, metrics: dict[str, float]) -> tuple[bool, str]:
    """Accepted or not, and why, by the thresholds in ``trainer``."""
    t = settings.trainer
    problems = []
    if metrics["recall_after"] < t.min_recall_after:
        problems.append(f"recall {metrics['recall_after']:.2f} < {t.min_recall_after:.2f}")
    if metrics["recall_gain"] < t.min_recall_gain:
        problems.append(f"recall gain {metrics['recall_gain']:+.2f} < {t.min_recall_gain:+.2f}")
    if not metrics["control_ppl_increase"] <= t.max_control_ppl_increase:
        problems.append(
            f"control perplexity +{metrics['control_ppl_increase']:.1%} > "
            f"{t.max_control_ppl_increase:.1%}"
        )
    summary = (
        f"recall {metrics['recall_before']:.2f} -> {metrics['recall_after']:.2f}, control "
        f"perplexity {metrics['control_ppl_before']:.2f} -> {metrics['control_ppl_after']:.2f} "
        f"({metrics['control_ppl_increase']:+.1%})"
    )
    if problems:
        return False, "rejected: " + "; ".join(problems) + f" ({summary})"
    return True, f"accepted: {summary}"


def train_adapter(
    settings: Settings,
    blobs: BlobStore,
    tenant: str,
    namespace: str,
    facts: Sequence[Fact],
    *,
    name: str,
    version: str,
    progress: ProgressFn | None = None,
) -> TrainOutcome:
    """Distils ``facts`` into a LoRA adapter on the serving base model (module doc)."""
    _check(settings, tenant, namespace, facts)
    check_name("name", name)
    check_name("version", version)
    started = time.monotonic()
    t = settings.trainer

    def report(message: str, fraction: float) -> None:
        log.info("trainer %s/%s %s@%s: %s", tenant, namespace, name, version, message)
        if progress is not None:
            progress(message, min(1.0, max(0.0, fraction)))

    import torch

    from shared.models.loading import load_model

    if t.runner == "inline" and settings.inference.threads:
        torch.set_num_threads(settings.inference.threads)
    report(f"loading base model {settings.inference.model}", 0.0)
    model, tok, model_id = load_model(
        settings.inference.model, settings.inference.dtype, settings.cache_dir
    )
    fp = fingerprint_of(model, tok, model_id, settings.inference.dtype)
    generator = create_generator(settings)
    data = build_training_set([(f.cube_id, f.text) for f in facts], generator, seed=t.seed)
    if not data.probes:
        raise ValidationFailed("no fact has a cloze to evaluate (every text is one word)")
    n_base = math.ceil(t.base_samples * len(data))
    samples = base_samples(model, tok, n_base, t.base_sample_tokens, t.seed)
    data = TrainingSet(
        data.texts + tuple(TrainingText("", s, "base") for s in samples), data.probes
    )
    hp = Hyper.from_settings(t)
    report(f"training set: {len(data)} texts {data.counts()} from {len(facts)} facts", _LOAD)

    recall_before, ppl_before = evaluate(model, tok, data, settings)
    report(f"before: recall {recall_before:.2f}, control perplexity {ppl_before:.2f}", _EVAL_BEFORE)

    # Under KL (one worker) the base samples are anchors, not steps' texts.
    kl = hp.base_kl_weight > 0 and t.num_workers == 1
    trained = sum(1 for x in data.texts if not (kl and x.kind == "base"))
    steps = total_steps(trained, hp, t.num_workers)

    def on_step(step: int, total: int, loss: float) -> None:
        frac = _EVAL_BEFORE + (_TRAIN_END - _EVAL_BEFORE) * step / max(total, 1)
        report(f"training step {step}/{total} ({step / max(total, 1):.0%}) loss {loss:.4f}", frac)

    report(f"training {steps} steps on runner {t.runner}", _EVAL_BEFORE)
    result: TrainResult
    if t.runner == "inline":
        result = run_inline(model, tok, data.texts, hp, base_name=model_id, on_step=on_step)
    else:
        result = run_ray(
            settings,
            data.texts,
            hp,
            base_name=model_id,
            weights_sha256=fp.weights_sha256,
            on_step=on_step,
        )
    peft_model = with_adapter(model, result.files)
    recall_after, ppl_after = evaluate(peft_model, tok, data, settings)
    increase = ppl_after / ppl_before - 1 if ppl_before > 0 else math.inf
    metrics = {
        "recall_before": recall_before,
        "recall_after": recall_after,
        "recall_gain": recall_after - recall_before,
        "control_ppl_before": ppl_before,
        "control_ppl_after": ppl_after,
        "control_ppl_increase": increase,
        "final_loss": result.final_loss,
        "steps": float(result.steps),
        "train_s": result.train_s,
        "facts": float(len(data.probes)),
    }
    report(f"after: recall {recall_after:.2f}, control perplexity {ppl_after:.2f}", _EVAL_AFTER)
    accepted, reason = gate(settings, metrics)
    duration = time.monotonic() - started
    hyper = {
        **hp.to_dict(),
        "runner": t.runner,
        "num_workers": t.num_workers,
        "base_samples": t.base_samples,
        "base_sample_tokens": t.base_sample_tokens,
        "generator": t.generator,
    }
    adapter_id = manifest_key = None
    if accepted:
        store = AdapterStore(blobs)
        adapter_id = store.save(
            tenant,
            namespace,
            name=name,
            version=version,
            files=result.files,
            fingerprint=fp,
            sources=sorted({SourceRef(f.cube_id, f.version) for f in facts}, key=str),
            hyperparameters=hyper,
            data_size=len(data),
            metrics=metrics,
            duration_s=round(duration, 3),
        )
        manifest_key, _ = store.resolve(tenant, namespace, adapter_id)
        reason = f"{reason}; saved as {adapter_id}"
    report(reason, 1.0)
    return TrainOutcome(
        accepted=accepted,
        adapter_id=adapter_id,
        manifest_key=manifest_key,
        base_model=fp.short(),
        metrics=metrics,
        hyperparameters=hyper,
        data_size=len(data),
        duration_s=duration,
        reason=reason,
    )
