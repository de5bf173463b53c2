"""Training-text generators (the ``TrainingTextGenerator`` port) and their registry.

* ``templates`` (default): statement, cloze and QA forms by fixed templates
  (services/trainer/dataset.py); deterministic, no model.
* ``openai``: the templates plus questions/answers and paraphrases written by an
  OpenAI-compatible chat model (``trainer.openai_url`` / ``openai_model``). Its
  output is checked: a QA pair whose answer is not in the fact is dropped, so the
  LLM cannot teach the adapter something the memory does not say.

``trainer.generator`` names one; an unknown name is a ConfigError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from services.trainer.dataset import template_texts
from shared.errors import Unavailable
from shared.ports.generator import TrainingText, TrainingTextGenerator
from shared.registry import Registry
from shared.settings import Settings

log = logging.getLogger(__name__)

GENERATORS: Registry[TrainingTextGenerator] = Registry("trainer generator")


class TemplateGenerator:
    name = "templates"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateGenerator:
        return cls(settings.trainer.seed)

    def generate(self, fact: str) -> Sequence[TrainingText]:
        return template_texts(fact, self.seed)


_PROMPT = (
    "You write training data. For the fact below, return JSON only: "
    '{"questions": [{"q": "...", "a": "..."}], "paraphrases": ["..."]} with up to '
    "3 short questions whose answer is a few words copied from the fact, and up to 2 "
    "paraphrases that keep every name and number.\nFact: "
)


class OpenAIGenerator:
    """Templates plus an LLM's questions and paraphrases (OpenAI chat/completions)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout_s: float = 60.0,
        seed: int = 0,
        client: Any = None,
    ) -> None:
        from shared.clients.openai_http import openai_client

        self.model = model
        self.seed = seed
        self.client = client or openai_client(base_url, api_key, timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIGenerator:
        t = settings.trainer
        return cls(
            t.openai_url,
            t.openai_model,
            t.openai_api_key.get_secret_value(),
            t.openai_timeout_s,
            t.seed,
        )

    def generate(self, fact: str) -> Sequence[TrainingText]:
        import httpx

        out = list(template_texts(fact, self.seed))
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": _PROMPT + fact}],
            "temperature": 0,
            "seed": self.seed,
        }
        try:
            r = self.client.post("/chat/completions", json=body)
            r.raise_for_status()
            content = r.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise Unavailable(f"training-text generator {self.model}: {exc}") from exc
        out.extend(parse_llm_output(fact, content))
        return out


def parse_llm_output(fact: str, content: str) -> list[TrainingText]:
    """The LLM's JSON as training texts; malformed parts and answers not in the fact dropped."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("generator: output is not JSON; templates only for %r", fact[:60])
        return []
    if not isinstance(data, dict):
        return []
    out: list[TrainingText] = []
    lowered = fact.lower()
    for item in data.get("questions") or []:
        if not isinstance(item, dict):
            continue
        q, a = str(item.get("q", "")).strip(), str(item.get("a", "")).strip()
        if q and a and a.lower() in lowered:
            out.append(TrainingText(f"Q: {q}\nA:", f" {a}", "qa"))
    for p in data.get("paraphrases") or []:
        if isinstance(p, str) and p.strip():
            out.append(TrainingText("", " ".join(p.split()), "paraphrase"))
    return out


GENERATORS.register("templates", TemplateGenerator.from_settings)
GENERATORS.register("openai", OpenAIGenerator.from_settings)


def create_generator(settings: Settings) -> TrainingTextGenerator:
    """The generator ``settings.trainer.generator`` names; ConfigError for an unknown one."""
    return GENERATORS.create(settings.trainer.generator, settings)
