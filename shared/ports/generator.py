"""TrainingTextGenerator: a memory's text → the texts a LoRA adapter is trained on.

The trainer distils plaintext memories into an adapter; a statement alone teaches
the model the sentence, not to recall its answer when asked differently, so each
fact is expanded into several forms: the statement itself, a cloze (the text
before the answer as context, the answer as the completion) and question/answer
pairs. ``prompt`` is context the loss ignores; ``completion`` is what the model
learns to produce after it. Implementations: services/trainer/generators.py
(``templates``: deterministic, no model; ``openai``: an OpenAI-compatible LLM
writes extra questions and paraphrases on top of the templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

# "base": the base model's own samples, mixed in by the trainer as regularisation.
TextKind = Literal["statement", "cloze", "qa", "paraphrase", "base"]


@dataclass(frozen=True)
class TrainingText:
    """One training example: ``prompt`` (not trained on, may be empty) + ``completion``."""

    prompt: str
    completion: str
    kind: TextKind


@runtime_checkable
class TrainingTextGenerator(Protocol):
    name: str

    def generate(self, fact: str) -> Sequence[TrainingText]:
        """The training texts of one fact (the statement itself included)."""
        ...
