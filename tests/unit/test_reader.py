"""MemReader: requests → cube drafts, with no LLM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from services.interface.extractors import NoExtractor, OpenAIExtractor, build_extractor
from services.interface.reader import MemReader
from shared.errors import ConfigError, Unavailable
from shared.schemas.api import CubeDraft, MemoryCreate
from shared.schemas.memcube import Origin, SemanticType
from shared.settings import ExtractorSettings

pytestmark = pytest.mark.unit

TS = "2023-05-08T13:56:00Z"


def msgs(*items: dict[str, Any], **extra: Any) -> MemoryCreate:
    return MemoryCreate.model_validate({"messages": list(items), **extra})


def test_text_form_is_one_fact_draft() -> None:
    req = MemoryCreate.model_validate(
        {
            "text": "Ann likes tea",
            "metadata": {"k": 1},
            "tags": ["x"],
            "event_time": "2023-01-02T03:04:05Z",
            "ttl_seconds": 60,
        }
    )
    [d] = MemReader().read(req)
    assert d.text == "Ann likes tea"
    assert d.semantic_type == SemanticType.fact and d.origin == Origin.user_input
    assert d.event_time == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (d.metadata, d.tags, d.ttl_seconds, d.sources) == ({"k": 1}, ["x"], 60, [])
    assert d.embedding_text is None


def test_text_form_keeps_a_given_semantic_type_and_is_not_rewritten() -> None:
    req = MemoryCreate(text="met Bob yesterday", semantic_type=SemanticType.event)
    [d] = MemReader().read(req)
    assert d.semantic_type == SemanticType.event and d.text == "met Bob yesterday"


def test_message_becomes_speaker_prefixed_draft_with_sources_and_metadata() -> None:
    req = msgs(
        {"id": "D1:1", "role": "user", "name": "Caroline", "content": "Hi!", "timestamp": TS},
        {"id": "D1:2", "role": "assistant", "content": "Hello."},
        metadata={"conversation": "conv-26", "speaker": "overridden"},
        tags=["chat"],
    )
    a, b = MemReader().read(req)
    assert a.text == "Caroline: Hi!" and b.text == "assistant: Hello."
    assert a.semantic_type == SemanticType.message and a.origin == Origin.user_input
    assert a.sources == ["D1:1"] and b.sources == ["D1:2"]
    assert a.tags == ["chat"]
    assert a.metadata == {
        "conversation": "conv-26",
        "speaker": "Caroline",
        "role": "user",
        "timestamp": "2023-05-08T13:56:00+00:00",
        "content": "Hi!",
    }
    assert b.metadata["speaker"] == "assistant" and "timestamp" not in b.metadata
    assert a.event_time == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert b.event_time is None


def test_relative_dates_resolved_against_message_timestamp() -> None:
    req = msgs(
        {"id": "m", "role": "user", "name": "Mel", "content": "I ran yesterday!", "timestamp": TS}
    )
    [d] = MemReader().read(req)
    assert d.text == "Mel: I ran yesterday [2023-05-07]!"
    assert d.metadata["content"] == "I ran yesterday!"
    assert d.metadata["resolved_dates"] == [
        {"text": "yesterday", "date": "2023-05-07", "granularity": "day"}
    ]
    assert d.event_time == datetime(2023, 5, 7, tzinfo=UTC)


def test_two_expressions_keep_the_message_time() -> None:
    content = "Went yesterday, going again next week"
    [d] = MemReader().read(msgs({"id": "m", "role": "user", "content": content, "timestamp": TS}))
    assert len(d.metadata["resolved_dates"]) == 2
    assert d.event_time == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def test_local_date_of_the_timestamp_is_the_base() -> None:
    # 23:30 at UTC-05:00 on the 8th is already the 9th in UTC; "yesterday" is the 7th.
    ts = datetime(2023, 5, 8, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    req = msgs({"id": "m", "role": "user", "content": "yesterday", "timestamp": ts.isoformat()})
    [d] = MemReader().read(req)
    assert d.metadata["resolved_dates"][0]["date"] == "2023-05-07"


def test_request_event_time_is_the_fallback_base() -> None:
    req = msgs(
        {"id": "m", "role": "user", "content": "see you tomorrow"},
        event_time="2023-05-08T00:00:00Z",
    )
    [d] = MemReader().read(req)
    assert d.text == "user: see you tomorrow [2023-05-09]"


def test_no_timestamp_means_no_resolution() -> None:
    [d] = MemReader().read(msgs({"id": "m", "role": "user", "content": "yesterday"}))
    assert d.text == "user: yesterday" and "resolved_dates" not in d.metadata
    assert d.event_time is None


def test_embedding_text_carries_the_previous_messages() -> None:
    req = msgs(
        {"id": "1", "role": "user", "name": "A", "content": "Did you go to Paris?"},
        {"id": "2", "role": "user", "name": "B", "content": "Yes, twice!"},
        {"id": "3", "role": "user", "name": "A", "content": "Wow"},
    )
    d1, d2, d3 = MemReader(context_window=1).read(req)
    assert d1.embedding_text is None
    assert d2.embedding_text == "A: Did you go to Paris?\nB: Yes, twice!"
    assert d3.embedding_text == "B: Yes, twice!\nA: Wow"
    e3 = MemReader(context_window=2).read(req)[2]
    assert e3.embedding_text == "A: Did you go to Paris?\nB: Yes, twice!\nA: Wow"
    assert all(d.embedding_text is None for d in MemReader(context_window=0).read(req))


def test_semantic_type_and_ttl_apply_to_every_message() -> None:
    req = msgs(
        {"id": "1", "role": "user", "content": "a"},
        {"id": "2", "role": "user", "content": "b"},
        semantic_type="event",
        ttl_seconds=3600,
    )
    assert all(
        d.semantic_type == SemanticType.event and d.ttl_seconds == 3600
        for d in MemReader().read(req)
    )


def test_five_thousand_messages() -> None:
    base = datetime(2023, 1, 1, tzinfo=UTC)
    items = [
        {
            "id": f"D{i}",
            "role": "user" if i % 2 else "assistant",
            "name": "Ann" if i % 2 else "Bob",
            "content": f"message {i}: I saw it yesterday and will again next week, ok?",
            "timestamp": (base + timedelta(minutes=i)).isoformat(),
        }
        for i in range(5000)
    ]
    drafts = MemReader().read(msgs(*items))
    assert len(drafts) == 5000
    assert [d.sources[0] for d in drafts] == [f"D{i}" for i in range(5000)]
    assert all(len(d.metadata["resolved_dates"]) == 2 for d in drafts)


def test_negative_context_window_is_refused() -> None:
    with pytest.raises(ValueError):
        MemReader(context_window=-1)


# --- extractors ------------------------------------------------------------------


def test_no_extractor_returns_the_drafts() -> None:
    drafts = [CubeDraft(text="x")]
    assert NoExtractor().extract(drafts) is drafts
    assert isinstance(build_extractor(ExtractorSettings()), NoExtractor)


def test_unknown_extractor_backend_is_a_config_error() -> None:
    cfg = ExtractorSettings.model_construct(backend="gpt-magic")
    with pytest.raises(ConfigError, match="gpt-magic"):
        build_extractor(cfg)


def _openai(handler: Any) -> OpenAIExtractor:
    cfg = ExtractorSettings(backend="openai", base_url="http://llm.test/v1", api_key="sk-x")
    return OpenAIExtractor(cfg, client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_openai_extractor_adds_facts_with_sources() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers.get("authorization")
        content = (
            '{"facts": [{"text": "Ann went to Paris on 2023-05-07", "semantic_type": "event",'
            ' "sources": ["m1", "nope"]}, {"bad": 1}, {"text": "  "}]}'
        )
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    t = datetime(2023, 5, 7, tzinfo=UTC)
    drafts = [
        CubeDraft(text="Ann: went to Paris yesterday", sources=["m1"], event_time=t),
        CubeDraft(text="Bob: cool", sources=["m2"]),
    ]
    out = _openai(handler).extract(drafts)
    assert out[:2] == drafts and len(out) == 3
    fact = out[2]
    assert fact.origin == Origin.inference_extraction
    assert fact.semantic_type == SemanticType.event
    assert fact.sources == ["m1"] and fact.event_time == t
    assert seen["url"] == "http://llm.test/v1/chat/completions"
    assert seen["auth"] == "Bearer sk-x"


def test_openai_extractor_down_is_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    with pytest.raises(Unavailable) as info:
        _openai(handler).extract([CubeDraft(text="x", sources=["m"])])
    assert info.value.code == "extractor_unavailable"


def test_openai_extractor_tolerates_non_json_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "sorry, no"}}]})

    drafts = [CubeDraft(text="x", sources=["m"])]
    assert _openai(handler).extract(drafts) == drafts
