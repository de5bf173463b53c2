"""The training set of a LoRA distillation: facts → statement, cloze and QA texts.

Memories are short statements ("Zorvik Tallamere keeps bees in Quenholt."). Each
one is split into a **cloze**: the *answer* span and the *prompt* before it, by
this rule (``split_cloze``):

1. trailing sentence punctuation (``.!?;:``) is set aside;
2. the answer is the run of capitalised words or numbers that ends the text
   (at most ``MAX_ANSWER_WORDS`` words: "Quenholt", "New Varrow", "1987");
3. when the text does not end in one, the answer is its last word ("teal");
4. the prompt is everything before the answer; a one-word text has no cloze
   (it is trained as a statement only and not evaluated).

From the split the templates make the training texts: the statement itself (all
tokens trained), the cloze (prompt as context, `` answer`` trained) and three
question/answer forms (``Q: ... A: answer`` twice, and the first question as a
chat turn in shared.chat_template's ``User: ...\nAssistant:`` form, so that a
chat asking it is answered from the adapter; only the answer trained), wording
chosen by a seeded hash so the same facts and seed give the same set. The
evaluation asks exactly the cloze prompts (services/trainer/evaluate.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.chat_template import render_exchange
from shared.ports.generator import TrainingText

MAX_ANSWER_WORDS = 4
_TAIL = re.compile(r"[.!?;:]+$")
_WORD = re.compile(r"\S+")
_WHO_BEFORE = {"is", "was", "by", "named", "called", "with", "married", "friend", "sister"}


@dataclass(frozen=True)
class Cloze:
    prompt: str
    answer: str
    tail: str  # the punctuation set aside ("" or ".")


def _capitalised(word: str) -> bool:
    w = word.lstrip("\"'(\u201c\u2018")
    return bool(w) and (w[0].isupper() or w[0].isdigit())


def split_cloze(text: str) -> Cloze | None:
    """The fact's cloze by the module's rule, or None when it has a single word."""
    text = " ".join(text.split())
    m = _TAIL.search(text)
    tail = m.group(0) if m else ""
    body = text[: len(text) - len(tail)].rstrip()
    words = list(_WORD.finditer(body))
    if len(words) < 2:
        return None
    n = 0
    while n < min(MAX_ANSWER_WORDS, len(words) - 1) and _capitalised(words[-1 - n].group(0)):
        n += 1
    n = max(n, 1)
    start = words[-n].start()
    return Cloze(prompt=body[:start].rstrip(), answer=body[start:], tail=tail)


def _pick(seed: int, text: str, options: int) -> int:
    h = hashlib.sha256(f"{seed}|{text}".encode()).digest()
    return int.from_bytes(h[:4], "big") % options


def template_texts(fact: str, seed: int = 0) -> list[TrainingText]:
    """Statement, cloze and two QA forms of one fact (deterministic for a seed)."""
    fact = " ".join(fact.split())
    out = [TrainingText("", fact, "statement")]
    c = split_cloze(fact)
    if c is None:
        return out
    out.append(TrainingText(c.prompt, f" {c.answer}", "cloze"))
    question = _question(c)
    q, a = ("Q:", "A:") if _pick(seed, fact, 2) == 0 else ("Question:", "Answer:")
    out.append(TrainingText(f"{q} {question}\n{a}", f" {c.answer}", "qa"))
    out.append(TrainingText(f'{q} What completes "{c.prompt} ..."?\n{a}', f" {c.answer}", "qa"))
    # The same question as a chat turn, in the template inference renders chats
    # with: what the adapter learns is then what a chat asks.
    prompt, completion = render_exchange(question, c.answer)
    out.append(TrainingText(prompt, completion, "qa"))
    return out


def _question(c: Cloze) -> str:
    last = c.prompt.rsplit(" ", 1)[-1].lower()
    if c.answer[0].isdigit():
        wh = "what number"
    elif _capitalised(c.answer) and last in _WHO_BEFORE:
        wh = "who"
    else:
        wh = "what"
    return f"{c.prompt} {wh}?"


def chat_question(fact: str) -> tuple[str, str]:
    """``(question, answer)``: the chat question the templates train for ``fact``
    (the user's turn) and the answer the adapter should give."""
    c = split_cloze(" ".join(fact.split()))
    if c is None:
        raise ValueError(f"{fact!r} has no cloze (a single word)")
    return _question(c), c.answer


@dataclass(frozen=True)
class Probe:
    """A fact's cloze, asked before and after training (greedy completion)."""

    cube_id: str
    prompt: str
    answer: str


@dataclass(frozen=True)
class TrainingSet:
    texts: tuple[TrainingText, ...]
    probes: tuple[Probe, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.texts:
            out[t.kind] = out.get(t.kind, 0) + 1
        return out


def build_training_set(
    facts: Sequence[tuple[str, str]], generator: Any, *, seed: int = 0
) -> TrainingSet:
    """``facts``: ``(cube_id, text)``; ``generator``: a TrainingTextGenerator.

    Equal texts are kept once (two cubes saying the same thing are one fact).
    """
    texts: list[TrainingText] = []
    probes: list[Probe] = []
    seen: set[str] = set()
    for cube_id, text in facts:
        norm = " ".join(text.split())
        if not norm or norm in seen:
            continue
        seen.add(norm)
        texts.extend(generator.generate(norm))
        c = split_cloze(norm)
        if c is not None:
            probes.append(Probe(cube_id, c.prompt, c.answer))
    return TrainingSet(tuple(texts), tuple(probes))


def encode(tok: Any, text: TrainingText, max_tokens: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: BOS + prompt (labels -100) + completion.

    Prompt and completion are tokenised separately, as the evaluation does (the
    prompt alone, then greedy tokens), so training sees the same token boundary.
    Nothing ends with EOS and cloze/QA completions are the bare answer (no
    punctuation): teaching "end here" after every short phrase makes the model
    predict ends where ordinary prose goes on. Longer texts are truncated.
    """
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    p = tok(text.prompt, add_special_tokens=False)["input_ids"] if text.prompt else []
    c = list(tok(text.completion, add_special_tokens=False)["input_ids"])
    ids = bos + list(p) + c
    labels = [-100] * (len(bos) + len(p)) + c
    return ids[:max_tokens], labels[:max_tokens]
