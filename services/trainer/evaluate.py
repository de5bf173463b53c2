"""Evaluation of a distillation: cloze recall of the facts and control perplexity.

* **Recall**: for every fact with a cloze (services/trainer/dataset.py), the
  prompt alone (BOS + prompt tokens, as in training) is completed greedily for
  the answer's token count plus ``trainer.eval_max_new_tokens``; the fact counts
  as recalled when the completion contains the answer (case and whitespace
  folded). Closed book: no memory text is in the prompt.
* **Control perplexity**: exp of the mean next-token loss over the held-out
  control text (services/trainer/control_text.py), in windows of
  ``max_seq_tokens``; it measures damage to unrelated language.

Both run on any causal LM (the base model, or the base with the adapter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from services.trainer.dataset import Probe

BATCH = 16


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _ids(tok: Any, text: str) -> list[int]:
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + list(tok(text, add_special_tokens=False)["input_ids"])


def complete(
    model: Any, tok: Any, prompts: Sequence[str], extra_tokens: Sequence[int]
) -> list[str]:
    """Greedy completions (one forward per new token, batched, left-padded)."""
    import torch

    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    for i in range(0, len(prompts), BATCH):
        batch = [_ids(tok, p) for p in prompts[i : i + BATCH]]
        width = max(map(len, batch))
        new = max(extra_tokens[i : i + BATCH])
        ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=device)
        mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=device)
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=pad,
            )
        for row in gen[:, width:]:
            out.append(tok.decode(row, skip_special_tokens=True))
    return out


def recall(
    model: Any, tok: Any, probes: Sequence[Probe], extra_tokens: int
) -> tuple[float, list[bool]]:
    """Fraction of probes whose greedy completion contains the answer, and each result."""
    if not probes:
        return 0.0, []
    budget = [
        len(tok(" " + p.answer, add_special_tokens=False)["input_ids"]) + extra_tokens
        for p in probes
    ]
    texts = complete(model, tok, [p.prompt for p in probes], budget)
    hits = [_norm(p.answer) in _norm(t) for p, t in zip(probes, texts, strict=True)]
    return sum(hits) / len(hits), hits


def perplexity(model: Any, tok: Any, text: str, window: int) -> float:
    """exp(mean next-token NLL) of ``text``, in windows of ``window`` tokens.

    Every window is fed after BOS (Gemma, like most models, is far off without
    it), so each window is scored as a document start would be.
    """
    import torch

    device = next(model.parameters()).device
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = bos + ids[start : start + window]
        if len(chunk) < 2:
            continue
        x = torch.tensor([chunk], device=device)
        with torch.inference_mode():
            logits = model(input_ids=x[:, :-1]).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0], x[0, 1:], reduction="sum")
        total += float(nll)
        count += len(chunk) - 1
    return math.exp(total / max(count, 1))


def base_samples(model: Any, tok: Any, n: int, tokens: int, seed: int) -> list[str]:
    """``n`` texts the base model writes from BOS alone (sampled, temperature 1).

    The trainer mixes them into the training set: fitting the base model's own
    distribution while learning the facts keeps the adapter from drifting on
    unrelated text (a cheap stand-in for a KL penalty against the base).
    """
    import torch

    if n <= 0:
        return []
    device = next(model.parameters()).device
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    torch.manual_seed(seed)
    for i in range(0, n, BATCH):
        rows = min(BATCH, n - i)
        ids = torch.full((rows, 1), start, device=device)
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=pad,
            )
        out.extend(tok.decode(row, skip_special_tokens=True) for row in gen[:, 1:])
    return [t for t in out if t.strip()]
