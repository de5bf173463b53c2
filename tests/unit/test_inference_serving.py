"""Serving: the inference ingress app (OpenAI-compatible chat with memory) over a
real vault (SQLite, hashing embedder) and a fake model backend, and the public
``POST /v1/chat`` in embedded mode and split (interface → HTTP → inference → HTTP
→ vault), including tenant isolation and bad requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.chat import ChatEngine
from services.vault.factory import build_vault
from shared.adapters import create_event_bus
from shared.schemas.api import Caller, CubeDraft, NamespaceCreate
from shared.settings import Settings
from tests import inference_fakes
from tests.inference_fakes import FakeBackend

pytestmark = pytest.mark.unit

SECRET_B = "Bruno's locker code is 9931"


def make_settings(tmp: Path, **inference: Any) -> Settings:
    return Settings(  # type: ignore[arg-type]
        data_dir=tmp,
        admin_key="root",
        embedder={"backend": "hashing"},
        inference={"backend": "fake", **inference},
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two tenants, each with a namespace of memories; B's holds a secret."""
    settings = make_settings(tmp_path)
    bus = create_event_bus(settings.bus)
    vault = build_vault(settings, bus=bus)
    vault.start()
    out: dict[str, Any] = {"settings": settings, "vault": vault, "bus": bus}
    for name, texts in (
        ("a", ["Ana lives in Lisbon", "Ana's locker code is 1234", "Ana likes green tea"]),
        ("b", [SECRET_B, "Bruno lives in Oslo"]),
    ):
        t = vault.create_tenant(name)
        key = vault.find_api_key(t.api_key.split("_")[1])
        assert key is not None
        caller = Caller(tenant=t.id, principal=key.principal)
        ns = vault.create_namespace(caller, NamespaceCreate(name="team")).id
        cubes = vault.create_memories(caller, ns, [CubeDraft(text=x) for x in texts])
        out[name] = {"caller": caller, "ns": ns, "cubes": cubes, "key": t.api_key}
    inference_fakes.PROMPTS.clear()
    yield out
    vault.close()
    bus.close()


def headers(caller: Caller) -> dict[str, str]:
    return {"X-Memgrid-Tenant": caller.tenant, "X-Memgrid-Principal": caller.principal}


def chat_body(ns: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "whatever",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is Ana's locker code?"},
        ],
        "max_tokens": 6,
        "temperature": 0,
    }
    if ns is not None:
        body["memgrid"] = {"namespaces": [ns], "token_budget": 64}
    return {**body, **extra}


@pytest.fixture
def inference(world: dict[str, Any]) -> Iterator[TestClient]:
    engine = ChatEngine(world["settings"].inference, FakeBackend(), world["vault"])
    with TestClient(create_app(world["settings"], engine)) as client:
        yield client


def sse_events(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_completion_is_openai_shaped_and_reports_memories(
    inference: TestClient, world: dict[str, Any]
) -> None:
    a = world["a"]
    r = inference.post(
        "/v1/chat/completions", json=chat_body(a["ns"]), headers=headers(a["caller"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "length"  # the fake never stops by itself
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
    report = body["memgrid"]
    ids = {c.id for c in a["cubes"]}
    assert report["memories"] and {m["id"] for m in report["memories"]} <= ids
    assert {m["tier"] for m in report["memories"]} == {"plaintext"}
    assert all(m["version"] == 1 for m in report["memories"])
    assert report["tiers_applied"] == ["plaintext"]
    assert 0 < report["memory_tokens"] <= 64
    [prompt] = inference_fakes.PROMPTS
    assert prompt.startswith("Relevant memories:\n- ")
    assert prompt.endswith("System: Be brief.\nUser: What is Ana's locker code?\nAssistant:")


def test_memories_used_are_published_as_inference_accesses(
    inference: TestClient, world: dict[str, Any]
) -> None:
    from tests.unit.test_vault import Recorder

    rec = Recorder(world["bus"], ["memory.accessed"])
    a = world["a"]
    r = inference.post(
        "/v1/chat/completions", json=chat_body(a["ns"]), headers=headers(a["caller"])
    )
    world["bus"].flush()
    used = [m["id"] for m in r.json()["memgrid"]["memories"]]
    events = [e.parse() for e in rec.events]
    assert [e.cube_id for e in events] == used  # type: ignore[attr-defined]
    assert {e.channel for e in events} == {"inference"}  # type: ignore[attr-defined]
    assert {e.query_id for e in events} == {r.json()["memgrid"]["query_id"]}  # type: ignore[attr-defined]


def test_token_budget_bounds_the_memory_block(inference: TestClient, world: dict[str, Any]) -> None:
    a = world["a"]
    body = chat_body(a["ns"])
    body["memgrid"]["token_budget"] = 12
    r = inference.post("/v1/chat/completions", json=body, headers=headers(a["caller"]))
    report = r.json()["memgrid"]
    assert 0 < report["memory_tokens"] <= 12
    assert len(report["memories"]) < 3
    body["memgrid"]["token_budget"] = 0
    r = inference.post("/v1/chat/completions", json=body, headers=headers(a["caller"]))
    assert r.json()["memgrid"]["memories"] == []


def test_streaming_sends_sse_chunks_with_memgrid_first(
    inference: TestClient, world: dict[str, Any]
) -> None:
    a = world["a"]
    r = inference.post(
        "/v1/chat/completions", json=chat_body(a["ns"], stream=True), headers=headers(a["caller"])
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["memgrid"]["memories"]
    assert all("memgrid" not in c for c in chunks[1:])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "I remember that well . I "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_isolation_foreign_namespace_is_404_and_never_injected(
    inference: TestClient, world: dict[str, Any]
) -> None:
    a, b = world["a"], world["b"]
    for ns in ([b["ns"]], [a["ns"], b["ns"]], ["ns_doesnotexist"]):
        body = chat_body()
        body["memgrid"] = {"namespaces": ns}
        for stream in (False, True):
            body["stream"] = stream
            r = inference.post("/v1/chat/completions", json=body, headers=headers(a["caller"]))
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "namespace_not_found"
    # B's own request does see B's memory; A's never does.
    body = chat_body(a["ns"])
    body["messages"][-1]["content"] = "What is Bruno's locker code?"
    r = inference.post("/v1/chat/completions", json=body, headers=headers(a["caller"]))
    assert r.status_code == 200
    assert {m["id"] for m in r.json()["memgrid"]["memories"]} <= {c.id for c in a["cubes"]}
    assert not any(SECRET_B in p for p in inference_fakes.PROMPTS)
    r = inference.post(
        "/v1/chat/completions", json=chat_body(b["ns"]), headers=headers(b["caller"])
    )
    assert any(SECRET_B in p for p in inference_fakes.PROMPTS)


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"n": 2}, 422, "body.n"),
        ({"messages": []}, 422, "body.messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 422, "body.messages.0.role"),
        ({"messages": [{"role": "user"}]}, 422, "body.messages.0.content"),
        ({"messages": "hello"}, 422, "body.messages"),
        ({"temperature": 3}, 422, "body.temperature"),
        ({"top_p": 0}, 422, "body.top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, 422, "body.stop"),
        ({"max_tokens": 0}, 422, "body.max_tokens"),
        ({"max_tokens": 5000}, 422, "body.max_tokens"),
        ({"logprobs": True}, 422, "body.logprobs"),
        (
            {"memgrid": {"namespaces": ["x"], "token_budget": 10**6}},
            422,
            "body.memgrid.token_budget",
        ),
        ({"memgrid": {"tiers": ["weights"]}}, 422, "body.memgrid.tiers.0"),
        ({"memgrid": {"tiers": ["activation"]}}, 400, "body.memgrid.tiers"),
        ({"memgrid": {"tiers": ["parametric"]}}, 400, "body.memgrid.tiers"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(
    inference: TestClient, world: dict[str, Any], change: dict[str, Any], status: int, field: str
) -> None:
    body = {**chat_body(), **change}
    r = inference.post("/v1/chat/completions", json=body, headers=headers(world["a"]["caller"]))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json().get("errors", [])], r.json()


def test_memory_without_a_tenant_is_401_and_plain_chat_works(inference: TestClient) -> None:
    r = inference.post("/v1/chat/completions", json=chat_body("ns_x"))
    assert r.status_code == 401
    r = inference.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200 and r.json()["memgrid"]["memories"] == []


def test_service_token_is_required_when_set(world: dict[str, Any], tmp_path: Path) -> None:
    settings = make_settings(tmp_path, serve={"service_token": "s3cret"})
    engine = ChatEngine(settings.inference, FakeBackend(), world["vault"])
    with TestClient(create_app(settings, engine)) as client:
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 401
        r = client.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Memgrid-Service-Token": "s3cret"}
        )
        assert r.status_code == 200
