"""A fake ModelBackend for serving tests: word tokens, a canned reply, prompts recorded.

It has the shape of services.inference.backends.base.ModelBackend without torch,
so the ingress app, the interface route and Serve's local testing mode can be
tested in a second. ``register_fake`` adds it to the backend registry as ``fake``
(``Settings(inference={"backend": "fake"})``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from shared.errors import MemgridError
from shared.settings import Settings

_TOKEN = re.compile(r"\S+\s*|\s+")
PROMPTS: list[str] = []  # every prompt any FakeBackend saw (tests clear it)
_LOCK = threading.Lock()


class FakeBackend:
    name = "fake"
    fingerprint = None
    model = "fake-model"
    supports_activation = False
    supports_adapters = False
    context_length = 4096

    def __init__(self, reply: str = "I remember that well . ", *, fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeBackend:
        return cls()

    def count_tokens(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def truncate_to_tokens(self, text: str, budget: int) -> str:
        return "".join(_TOKEN.findall(text)[: max(budget, 0)])

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        prefix: Any = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        if self.fail:
            raise MemgridError("model down", status=503, code="dependency_unavailable")
        with _LOCK:
            PROMPTS.append(prompt)
        words = _TOKEN.findall(self.reply)
        for i in range(max_new_tokens):
            yield words[i % len(words)]

    def build_prefix(self, text: str, *, sources: Sequence[Any] = ()) -> Any:
        raise MemgridError("no activation", status=400, code="tier_unsupported")

    def next_token_logits(self, prompt: str, *, prefix: Any = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        return None


def register_fake() -> None:
    from services.inference.backends import BACKENDS

    if "fake" not in BACKENDS.names():
        BACKENDS.register("fake", FakeBackend.from_settings)
