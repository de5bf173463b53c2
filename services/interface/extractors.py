"""Optional LLM extraction of facts from what MemReader read.

An :class:`Extractor` takes the drafts MemReader made and returns the drafts to
store. ``NoExtractor`` (the default, ``extractor.backend = "none"``) returns them
unchanged and is never slower than a function call. ``OpenAIExtractor`` keeps
every draft and adds the facts an OpenAI-compatible ``/chat/completions`` model
extracts from them (origin ``inference_extraction``, sources = the message ids
the facts came from), so the raw conversation is never lost to a bad extraction.
When the model cannot be reached the request fails with 503
(``extractor_unavailable``) rather than silently storing fewer memories.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from shared.errors import ConfigError, Unavailable
from shared.schemas.api import CubeDraft
from shared.schemas.memcube import Origin, SemanticType
from shared.settings import ExtractorSettings

log = logging.getLogger("memgrid.interface.extractor")

SYSTEM_PROMPT = (
    "You extract durable facts from a conversation for a long-term memory store. "
    "Each input line is '[id] text'. Answer with JSON only: "
    '{"facts": [{"text": str, "semantic_type": "fact"|"preference"|"event", '
    '"sources": [ids of the lines the fact comes from]}]}. '
    "Write each fact as one self-contained sentence naming the people involved, "
    'with absolute dates where the input gives them. No facts: {"facts": []}.'
)
_ALLOWED_TYPES = {SemanticType.fact, SemanticType.preference, SemanticType.event}


class Extractor(Protocol):
    def extract(self, drafts: list[CubeDraft]) -> list[CubeDraft]:
        """The drafts to store, given the drafts MemReader read."""
        ...


class NoExtractor:
    """Stores what MemReader read, nothing more."""

    def extract(self, drafts: list[CubeDraft]) -> list[CubeDraft]:
        return drafts


class OpenAIExtractor:
    """Facts from an OpenAI-compatible chat model, added to the read drafts."""

    def __init__(
        self,
        cfg: ExtractorSettings,
        client: httpx.Client | None = None,
        batch_size: int = 40,
    ) -> None:
        self.cfg = cfg
        self.batch_size = batch_size
        headers = {"Content-Type": "application/json"}
        key = cfg.api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = client or httpx.Client(timeout=cfg.timeout_s)
        self._headers = headers
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"

    def close(self) -> None:
        self._client.close()

    def extract(self, drafts: list[CubeDraft]) -> list[CubeDraft]:
        facts: list[CubeDraft] = []
        for i in range(0, len(drafts), self.batch_size):
            facts.extend(self._extract_batch(drafts[i : i + self.batch_size]))
        return [*drafts, *facts]

    def _extract_batch(self, batch: list[CubeDraft]) -> list[CubeDraft]:
        ids: dict[str, CubeDraft] = {}
        lines = []
        for n, d in enumerate(batch):
            ref = d.sources[0] if d.sources else f"t{n}"
            ids[ref] = d
            lines.append(f"[{ref}] {d.text}")
        body = {
            "model": self.cfg.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "\n".join(lines)},
            ],
        }
        try:
            resp = self._client.post(self._url, json=body, headers=self._headers)
            resp.raise_for_status()
            content = resp.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("extractor call failed: %s", type(exc).__name__)
            raise Unavailable(
                "the fact extractor could not be reached", code="extractor_unavailable"
            ) from exc
        return self._parse(content, ids, batch)

    @staticmethod
    def _parse(content: Any, ids: dict[str, CubeDraft], batch: list[CubeDraft]) -> list[CubeDraft]:
        try:
            data = json.loads(content) if isinstance(content, str) else None
        except ValueError:
            data = None
        items = data.get("facts") if isinstance(data, dict) else None
        if not isinstance(items, list):
            log.warning("extractor answered without a facts list; keeping messages only")
            return []
        out: list[CubeDraft] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                continue
            text = item["text"].strip()
            if not text:
                continue
            cited = [s for s in item.get("sources") or [] if isinstance(s, str) and s in ids]
            origin_drafts = [ids[s] for s in cited] or batch
            try:
                stype = SemanticType(item.get("semantic_type", "fact"))
            except ValueError:
                stype = SemanticType.fact
            if stype not in _ALLOWED_TYPES:
                stype = SemanticType.fact
            times = [d.event_time for d in origin_drafts if d.event_time is not None]
            sources = [s for d in origin_drafts for s in d.sources]
            out.append(
                CubeDraft(
                    text=text,
                    semantic_type=stype,
                    origin=Origin.inference_extraction,
                    event_time=times[0] if times else None,
                    tags=list(origin_drafts[0].tags),
                    sources=list(dict.fromkeys(sources)),
                    metadata={"extracted_from": sources},
                    ttl_seconds=origin_drafts[0].ttl_seconds,
                )
            )
        return out


_BACKENDS: dict[str, Callable[[ExtractorSettings], Extractor]] = {
    "none": lambda cfg: NoExtractor(),
    "openai": OpenAIExtractor,
}


def build_extractor(cfg: ExtractorSettings) -> Extractor:
    """The extractor named by ``cfg.backend``; an unknown name is a ConfigError."""
    try:
        factory = _BACKENDS[cfg.backend]
    except KeyError:
        raise ConfigError(
            f"unknown extractor backend {cfg.backend!r}; known: {', '.join(sorted(_BACKENDS))}"
        ) from None
    return factory(cfg)
