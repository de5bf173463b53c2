"""The LoRA training loop (peft) and its Ray Train wrapper (TorchTrainer).

``worker_loop`` is the per-worker function: it takes the training texts and the
hyperparameters, wraps the **base** model in a fresh LoRA (peft, no
``modules_to_save``: inference refuses those), trains with AdamW (linear warm-up
then linear decay; loss on completion tokens only, services/trainer/dataset.py)
and returns peft's two saved files. Runners:

* ``ray``: ``TorchTrainer(train_loop_per_worker, ScalingConfig(num_workers,
  use_gpu, resources_per_worker={"CPU": cpus_per_worker}))``. Each worker loads
  the base model itself (``inference.model``) and checks its weights digest
  against the driver's, so an adapter is never trained on another base; with
  several workers the model is wrapped in DDP by ``ray.train.torch.prepare_model``
  and each takes every ``world_size``-th example. Rank 0 reports the adapter as a
  Ray Train checkpoint (``trainer.storage_path``, a temporary directory when
  empty: fine for a local Ray, a shared path for a cluster); progress travels
  through a Ray queue to the driver's callback.
* ``inline``: the same ``worker_loop`` in this process on the already loaded
  model; the LoRA layers are removed afterwards (``unload``), so the caller's
  model is the base model again.

ray and torch are imported only inside functions.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.errors import Unavailable
from shared.lora.manifest import FILES
from shared.ports.generator import TrainingText
from shared.settings import Settings, TrainerSettings

log = logging.getLogger(__name__)

StepFn = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class Hyper:
    """What a training depends on besides the data (recorded in the manifest)."""

    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    epochs: int
    max_steps: int
    batch_size: int
    max_seq_tokens: int
    seed: int
    progress_every_steps: int
    base_kl_weight: float = 0.0
    base_kl_batch: int = 2

    @classmethod
    def from_settings(cls, t: TrainerSettings) -> Hyper:
        return cls(
            lora_r=t.lora_r,
            lora_alpha=t.lora_alpha,
            lora_dropout=t.lora_dropout,
            target_modules=tuple(t.target_modules),
            learning_rate=t.learning_rate,
            weight_decay=t.weight_decay,
            warmup_fraction=t.warmup_fraction,
            epochs=t.epochs,
            max_steps=t.max_steps,
            batch_size=t.batch_size,
            max_seq_tokens=t.max_seq_tokens,
            seed=t.seed,
            progress_every_steps=t.progress_every_steps,
            base_kl_weight=t.base_kl_weight,
            base_kl_batch=t.base_kl_batch,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class TrainResult:
    files: dict[str, bytes]  # adapter_config.json, adapter_model.safetensors
    steps: int
    final_loss: float
    train_s: float


def total_steps(n_examples: int, hp: Hyper, world: int = 1) -> int:
    per_worker = math.ceil(n_examples / world)
    steps = hp.epochs * math.ceil(per_worker / hp.batch_size)
    return min(steps, hp.max_steps) if hp.max_steps else steps


def lora_config(hp: Hyper, base_name: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_name,
    )


def answer_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over the labelled positions only.

    The same loss as ``model(labels=...)``, but the output projection runs only
    where a label is: Gemma's 262k-token vocabulary makes the full logits most
    of a step's cost on a CPU, and cloze and QA texts label a few tokens each.
    """
    import torch

    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def base_kl(peft_model: Any, rows: list[list[int]], pad: int, device: Any) -> Any:
    """KL(base || adapted) over the full vocabulary, mean over the rows' positions."""
    import torch

    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    with torch.no_grad(), peft_model.disable_adapter():
        base = peft_model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    adapted = peft_model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    keep = mask.bool()
    kl = torch.nn.functional.kl_div(
        adapted[keep], base[keep], log_target=True, reduction="batchmean"
    )
    return kl


def worker_loop(
    model: Any,
    tok: Any,
    texts: Sequence[TrainingText],
    hp: Hyper,
    *,
    base_name: str,
    rank: int = 0,
    world: int = 1,
    wrap: Callable[[Any], Any] | None = None,
    on_step: StepFn | None = None,
) -> TrainResult:
    """Trains a fresh LoRA on ``model`` (the base); the adapter files and stats.

    The LoRA layers stay in ``model`` until the caller unloads them
    (``inline`` does); a Ray worker's model is thrown away anyway.
    """
    import torch
    from peft import get_peft_model

    from services.trainer.dataset import encode

    started = time.monotonic()
    torch.manual_seed(hp.seed)
    with warnings.catch_warnings():  # "base_model_name_or_path renamed": set again below
        warnings.simplefilter("ignore", UserWarning)
        peft_model = get_peft_model(model, lora_config(hp, base_name))
    peft_model.train()
    trained = wrap(peft_model) if wrap else peft_model
    device = next(peft_model.parameters()).device
    kl = hp.base_kl_weight > 0 and wrap is None
    # KL mode: base samples anchor the adapter to the base distribution (not CE texts).
    anchors = [encode(tok, t, hp.max_seq_tokens)[0] for t in texts if kl and t.kind == "base"]
    texts = [t for t in texts if not (kl and t.kind == "base")]
    encoded = [encode(tok, t, hp.max_seq_tokens) for t in texts][rank::world]
    steps = total_steps(len(texts), hp, world)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    warm = int(steps * hp.warmup_fraction)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (steps - step) / max(1, steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    gen = torch.Generator().manual_seed(hp.seed)
    step, loss_avg = 0, float("nan")
    while step < steps:
        order = torch.randperm(len(encoded), generator=gen).tolist()
        for i in range(0, len(order), hp.batch_size):
            if step >= steps:
                break
            batch = [encoded[j] for j in order[i : i + hp.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=device)
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch], device=device)
            mask = torch.tensor(
                [[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=device
            )
            if wrap is None:
                loss_t = answer_loss(peft_model.get_base_model(), ids, mask, labels)
            else:  # DDP: through its forward, so gradients are synchronised
                loss_t = trained(input_ids=ids, attention_mask=mask, labels=labels).loss
            if anchors:
                pick = torch.randint(len(anchors), (hp.base_kl_batch,), generator=gen).tolist()
                loss_t = loss_t + hp.base_kl_weight * base_kl(
                    peft_model, [anchors[j] for j in pick], pad, device
                )
            loss_t.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss = float(loss_t.detach())
            loss_avg = loss if math.isnan(loss_avg) else 0.9 * loss_avg + 0.1 * loss
            if on_step and (step % hp.progress_every_steps == 0 or step == steps):
                on_step(step, steps, loss_avg)
    peft_model.eval()
    # peft records the model's name_or_path (a local directory, or None); inference
    # checks it against the served model id, so the id is what is recorded.
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    with tempfile.TemporaryDirectory(prefix="memgrid-lora-") as d:
        # No embedding check: "auto" would look the base model up on the Hub.
        peft_model.save_pretrained(d, save_embedding_layers=False)
        files = {f: (Path(d) / f).read_bytes() for f in FILES}
    return TrainResult(files, step, loss_avg, time.monotonic() - started)


def run_inline(
    model: Any,
    tok: Any,
    texts: Sequence[TrainingText],
    hp: Hyper,
    *,
    base_name: str,
    on_step: StepFn | None = None,
) -> TrainResult:
    """``worker_loop`` in this process; ``model`` is the base model again afterwards."""
    try:
        return worker_loop(model, tok, texts, hp, base_name=base_name, on_step=on_step)
    finally:
        _unload_lora(model)


def _unload_lora(model: Any) -> None:
    """Removes the LoRA layers peft injected into ``model`` (no merge)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BaseTunerLayer):
                setattr(module, child_name, child.get_base_layer())
        del name
    if hasattr(model, "peft_config"):
        del model.peft_config


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: load the base, check it, ``worker_loop``, report."""
    import ray.train
    import torch

    from shared.models.fingerprint import weights_digest
    from shared.models.loading import load_model

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config["threads"]))
    model, tok, _ = load_model(config["model"], config["dtype"], Path(config["cache_dir"]))
    if weights_digest(model) != config["weights_sha256"]:
        raise RuntimeError(
            f"worker {rank}: base model {config['model']} differs from the driver's "
            "(weights digest): refusing to train an adapter for another model"
        )
    wrap = None
    if world > 1 or config["use_gpu"]:
        from ray.train.torch import get_device, prepare_model

        model.to(get_device())
        if world > 1:
            wrap = prepare_model  # DDP

    queue = config.get("queue")

    def on_step(step: int, steps: int, loss: float) -> None:
        if rank == 0:
            log.info("lora step %d/%d loss %.4f", step, steps, loss)
            if queue is not None:
                queue.put((step, steps, loss))

    hp = Hyper(**{**config["hyper"], "target_modules": tuple(config["hyper"]["target_modules"])})
    result = worker_loop(
        model,
        tok,
        config["texts"],
        hp,
        base_name=config["base_name"],
        rank=rank,
        world=world,
        wrap=wrap,
        on_step=on_step,
    )
    metrics = {"steps": result.steps, "final_loss": result.final_loss, "train_s": result.train_s}
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="memgrid-lora-ckpt-") as d:
            for fname, data in result.files.items():
                (Path(d) / fname).write_bytes(data)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def init_ray(t: TrainerSettings) -> None:
    """Joins ``ray_address`` or an initialised Ray, or starts a small local one."""
    import ray

    if ray.is_initialized():
        return
    if t.ray_address:
        ray.init(address=t.ray_address)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster
        ray.init(
            num_cpus=max(t.ray_num_cpus, t.cpus_per_worker),
            include_dashboard=False,
            object_store_memory=t.ray_object_store_bytes,
        )


def run_ray(
    settings: Settings,
    texts: Sequence[TrainingText],
    hp: Hyper,
    *,
    base_name: str,
    weights_sha256: str,
    on_step: StepFn | None = None,
) -> TrainResult:
    """``worker_loop`` on Ray Train workers (TorchTrainer); the adapter from rank 0."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    t = settings.trainer
    init_ray(t)
    started = time.monotonic()
    queue = Queue(actor_options={"num_cpus": 0})
    storage = t.storage_path or tempfile.mkdtemp(prefix="memgrid-raytrain-")
    config = {
        "model": settings.inference.model,
        "dtype": settings.inference.dtype,
        "cache_dir": str(settings.cache_dir),
        "weights_sha256": weights_sha256,
        "base_name": base_name,
        "hyper": hp.to_dict(),
        "texts": list(texts),
        "threads": t.cpus_per_worker,
        "use_gpu": t.use_gpu,
        "queue": queue,
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=t.num_workers,
            use_gpu=t.use_gpu,
            resources_per_worker={"CPU": t.cpus_per_worker},
        ),
        run_config=RunConfig(storage_path=storage, name=f"memgrid-lora-{uuid.uuid4().hex[:12]}"),
    )
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set():
            try:
                step, steps, loss = queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor is gone: nothing more to relay
                return
            if on_step:
                on_step(step, steps, loss)

    relay_thread = threading.Thread(target=relay, name="lora-progress", daemon=True)
    relay_thread.start()
    try:
        result = trainer.fit()
        if result.error is not None:
            raise Unavailable(f"Ray Train failed: {result.error}", code="training_failed")
        if result.checkpoint is None:
            raise Unavailable("Ray Train reported no adapter checkpoint", code="training_failed")
        with result.checkpoint.as_directory() as d:
            files = {f: (Path(d) / f).read_bytes() for f in FILES}
        metrics = result.metrics or {}
    finally:
        stop.set()
        relay_thread.join(timeout=5)
        ray.kill(queue.actor)  # type: ignore[arg-type]
        if not t.storage_path:
            shutil.rmtree(storage, ignore_errors=True)
    return TrainResult(
        files,
        int(metrics.get("steps", 0)),
        float(metrics.get("final_loss", float("nan"))),
        time.monotonic() - started,
    )
