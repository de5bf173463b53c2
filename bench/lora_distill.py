"""LoRA distillation of 50 invented facts into Gemma 3 270M, on this CPU.

Runs the trainer's ``train_adapter`` (services/trainer/job.py) on the facts of
bench/facts_invented.py, each a memory of its own cube, and prints closed-book
cloze recall (greedy completion contains the answer) and perplexity on the
held-out control text before and after, the training set and steps, the
runner and wall times. The adapter is saved to a temporary BlobStore when the
gate accepts it. Defaults are the ``trainer`` settings; flags override them.

    nice -n -5 .venv/bin/python bench/lora_distill.py            # Ray Train runner
    nice -n -5 .venv/bin/python bench/lora_distill.py --runner inline
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.facts_invented import FACTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runner", choices=["ray", "inline"], default="ray")
    ap.add_argument("--model", default="gemma3-270m", help="inference.model")
    ap.add_argument("--facts", type=int, default=len(FACTS), help="how many of the 50")
    ap.add_argument("--lr", type=float, help="trainer.learning_rate")
    ap.add_argument("--epochs", type=int, help="trainer.epochs")
    ap.add_argument("--max-steps", type=int, help="trainer.max_steps")
    ap.add_argument("--batch-size", type=int, help="trainer.batch_size")
    ap.add_argument("--r", type=int, help="trainer.lora_r (alpha = 2r)")
    ap.add_argument("--dropout", type=float, help="trainer.lora_dropout")
    ap.add_argument("--targets", help="trainer.target_modules, comma-separated")
    ap.add_argument(
        "--threads", type=int, default=2, help="torch threads (inline), CPUs per worker"
    )
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.monotonic()
    import torch

    from services.trainer.dataset import split_cloze
    from services.trainer.job import Fact, train_adapter
    from shared.adapters.blob_fs import FileBlobStore
    from shared.settings import Settings

    for text, prompt, answer in FACTS:  # the hand-written clozes are the rule's
        c = split_cloze(text)
        assert c is not None and (c.prompt, c.answer) == (prompt, answer), text
    trainer: dict[str, Any] = {"runner": args.runner, "cpus_per_worker": args.threads}
    for key, value in [
        ("learning_rate", args.lr),
        ("epochs", args.epochs),
        ("max_steps", args.max_steps),
        ("batch_size", args.batch_size),
        ("lora_dropout", args.dropout),
    ]:
        if value is not None:
            trainer[key] = value
    if args.r is not None:
        trainer.update(lora_r=args.r, lora_alpha=2 * args.r)
    if args.targets:
        trainer["target_modules"] = args.targets.split(",")
    torch.set_num_threads(args.threads)
    settings = Settings(
        inference={"model": args.model, "threads": args.threads},  # type: ignore[arg-type]
        trainer=trainer,  # type: ignore[arg-type]
    )
    facts = [Fact(f"cube_{i:03d}", 1, text) for i, (text, _, _) in enumerate(FACTS[: args.facts])]
    last = [0.0]

    def progress(message: str, fraction: float) -> None:
        now = time.monotonic() - started
        if "training step" not in message or now - last[0] > 30:
            last[0] = now
            print(f"[{now:6.0f} s {fraction:4.0%}] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="memgrid-bench-lora-") as tmp:
        outcome = train_adapter(
            settings,
            FileBlobStore(Path(tmp)),
            "bench",
            "facts",
            facts,
            name="bench-facts",
            version="1",
            progress=progress,
        )
    total = time.monotonic() - started
    m = outcome.metrics
    hp = outcome.hyperparameters
    print()
    print(f"model                     {outcome.base_model}")
    print(
        f"runner                    {hp['runner']} (workers {hp['num_workers']}, "
        f"{args.threads} threads)"
    )
    print(f"facts                     {len(facts)}")
    print(f"training examples         {outcome.data_size}")
    print(
        f"hyperparameters           r {hp['lora_r']} alpha {hp['lora_alpha']} dropout "
        f"{hp['lora_dropout']} lr {hp['learning_rate']} epochs {hp['epochs']} batch "
        f"{hp['batch_size']} targets {','.join(hp['target_modules'])}"
    )
    print(f"steps                     {int(m['steps'])} (final loss {m['final_loss']:.4f})")
    print(f"cloze recall before       {m['recall_before']:.0%}")
    print(f"cloze recall after        {m['recall_after']:.0%}")
    print(f"control perplexity before {m['control_ppl_before']:.3f}")
    print(
        f"control perplexity after  {m['control_ppl_after']:.3f} ({m['control_ppl_increase']:+.2%})"
    )
    print(f"training wall time        {m['train_s']:.0f} s")
    print(f"train_adapter wall time   {outcome.duration_s:.0f} s")
    print(f"total wall time           {total:.0f} s")
    print(f"gate                      {outcome.reason}")


if __name__ == "__main__":
    main()
