"""The remote OpenAI-compatible backend against a mock server: streaming, local
stop strings, errors (unreachable → 503, remote 400 → 400), and the tiers it
cannot serve (activation, parametric → 400 tier_unsupported through the API)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.backends import BACKENDS
from services.inference.chat import ChatEngine
from services.inference.openai_backend import OpenAIBackend
from shared.errors import MemgridError
from shared.settings import Settings

pytestmark = pytest.mark.unit


def sse_server(words: list[str], seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handle(req: httpx.Request) -> httpx.Response:
        seen.append(json.loads(req.content))
        lines = [
            "data: " + json.dumps({"choices": [{"delta": {"content": w}, "index": 0}]})
            for w in words
        ]
        return httpx.Response(200, text="\n\n".join([*lines, "data: [DONE]"]) + "\n\n")

    return httpx.MockTransport(handle)


def backend(transport: httpx.MockTransport) -> OpenAIBackend:
    client = httpx.Client(base_url="http://remote/v1", transport=transport)
    return OpenAIBackend("http://remote/v1", "remote-model", client=client)


def test_registered_as_openai() -> None:
    assert BACKENDS.factory("openai") == OpenAIBackend.from_settings
    b = OpenAIBackend.from_settings(Settings(inference={"backend": "openai"}))  # type: ignore[arg-type]
    assert b.model == "gpt-4o-mini" and not b.supports_activation
    b.close()


def test_streams_pieces_and_cuts_at_stop_strings() -> None:
    seen: list[dict[str, object]] = []
    b = backend(sse_server(["Lis", "bon", ".", "\nUs", "er:", " more"], seen))
    out = list(b.generate("prompt", max_new_tokens=9, temperature=0, stop=["\nUser:"], seed=3))
    assert "".join(out) == "Lisbon."
    assert seen[0]["messages"] == [{"role": "user", "content": "prompt"}]
    assert (seen[0]["max_tokens"], seen[0]["seed"], seen[0]["stream"]) == (9, 3, True)


def test_errors() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(MemgridError) as down:
        list(backend(httpx.MockTransport(refuse)).generate("p", max_new_tokens=2))
    assert down.value.status == 503
    bad = httpx.MockTransport(
        lambda r: httpx.Response(400, json={"error": {"message": "too long"}})
    )
    with pytest.raises(MemgridError) as refused:
        list(backend(bad).generate("p", max_new_tokens=2))
    assert refused.value.status == 400
    auth = httpx.MockTransport(lambda r: httpx.Response(401, json={"error": {"message": "key"}}))
    with pytest.raises(MemgridError) as key:
        list(backend(auth).generate("p", max_new_tokens=2))
    assert key.value.status == 503


def test_truncation_respects_the_estimate() -> None:
    b = backend(sse_server([], []))
    text = "ünïcode words " * 50
    cut = b.truncate_to_tokens(text, 10)
    assert b.count_tokens(cut) <= 10 and text.startswith(cut)


def test_api_with_remote_backend(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    seen: list[dict[str, object]] = []
    engine = ChatEngine(settings.inference, backend(sse_server(["Hi", " there"], seen)), None)
    with TestClient(create_app(settings, engine)) as client:
        msgs = [{"role": "user", "content": "hello"}]
        r = client.post("/v1/chat/completions", json={"messages": msgs})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hi there"
        assert r.json()["model"] == "remote-model"
        for tier in ("activation", "parametric"):
            r = client.post(
                "/v1/chat/completions", json={"messages": msgs, "memgrid": {"tiers": [tier]}}
            )
            assert r.status_code == 400 and r.json()["code"] == "tier_unsupported"
