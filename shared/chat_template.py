"""The one prompt template memgrid renders conversations with (docs/inference.md#prompt-template).

Inference renders every chat with it; the trainer renders its question/answer
training examples with it, so that what an adapter learned is what a chat asks.
Gemma 3 270M, the default model, is a base model with no chat template of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

TURN_STOP = "\nUser:"
ROLE_LABEL = {"system": "System", "user": "User", "assistant": "Assistant"}


class Turn(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def name(self) -> str | None: ...


def render_conversation(messages: Sequence[Turn]) -> str:
    """The turns, then ``"Assistant:"`` for the model to continue."""
    lines = []
    for m in messages:
        label = ROLE_LABEL[m.role] if m.name is None else f"{ROLE_LABEL[m.role]} ({m.name})"
        lines.append(f"{label}: {m.content.strip()}\n")
    return "".join(lines) + "Assistant:"


def render_exchange(question: str, answer: str) -> tuple[str, str]:
    """One user question and the assistant's answer as (prompt, completion): the
    prompt is what ``render_conversation`` gives for the question alone."""
    return f"{ROLE_LABEL['user']}: {question.strip()}\n{ROLE_LABEL['assistant']}:", f" {answer}"
