"""API v1 over HTTP with the real embedded vault: memories, versions, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

Tenant = Callable[[str], dict[str, str]]


@pytest.fixture
def h(make_tenant: Tenant) -> dict[str, str]:
    return make_tenant("acme")


@pytest.fixture
def ns(api_client: TestClient, h: dict[str, str]) -> str:
    return str(api_client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"])


def add(client: TestClient, h: dict[str, str], ns: str, body: dict[str, Any]) -> list[Any]:
    r = client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h)
    assert r.status_code == 201, r.text
    memories: list[Any] = r.json()["memories"]
    return memories


def test_text_memory(api_client: TestClient, h: dict[str, str], ns: str) -> None:
    [m] = add(
        api_client,
        h,
        ns,
        {
            "text": "Ann prefers green tea",
            "metadata": {"source": "crm", "n": 3},
            "tags": ["prefs"],
            "semantic_type": "preference",
            "event_time": "2023-05-01T12:00:00",
            "ttl_seconds": 3600,
        },
    )
    assert m["version"] == 1 and m["namespace"] == ns
    assert m["payload"] == {"tier": "plaintext", "text": "Ann prefers green tea"} | {
        "embedding_model": m["payload"]["embedding_model"]
    }
    assert m["semantic_type"] == "preference" and m["origin"] == "user_input"
    assert m["tags"] == ["prefs"] and m["metadata"] == {"source": "crm", "n": 3}
    assert m["event_time"] == "2023-05-01T12:00:00Z"
    assert m["governance"]["lifespan"]["ttl_seconds"] == 3600
    assert api_client.get(f"/v1/memories/{m['id']}", headers=h).json() == m


def test_messages_memory(api_client: TestClient, h: dict[str, str], ns: str) -> None:
    msgs = [
        {
            "id": "D1:1",
            "role": "user",
            "name": "Caroline",
            "content": "I went to a LGBTQ support group yesterday.",
            "timestamp": "2023-05-08T13:56:00Z",
        },
        {"id": "D1:2", "role": "user", "name": "Melanie", "content": "Wow, how was it?"},
    ]
    a, b = add(api_client, h, ns, {"messages": msgs, "metadata": {"conversation": "conv-26"}})
    assert a["payload"]["text"] == (
        "Caroline: I went to a LGBTQ support group yesterday [2023-05-07]."
    )
    assert a["sources"] == ["D1:1"] and b["sources"] == ["D1:2"]
    assert a["semantic_type"] == "message"
    assert a["event_time"] == "2023-05-07T00:00:00Z"
    assert a["metadata"]["speaker"] == "Caroline" and a["metadata"]["conversation"] == "conv-26"
    assert a["metadata"]["timestamp"] == "2023-05-08T13:56:00+00:00"
    assert a["metadata"]["resolved_dates"][0]["date"] == "2023-05-07"
    assert b["payload"]["text"] == "Melanie: Wow, how was it?"


def test_a_conversation_of_3000_messages(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    msgs = [
        {
            "id": f"D{i // 20}:{i % 20}",
            "role": "user",
            "name": "Ann" if i % 2 else "Bob",
            "content": f"turn {i}: the weather was odd last week, wasn't it? topic {i % 37}",
            "timestamp": (t0 + timedelta(minutes=7 * i)).isoformat(),
        }
        for i in range(3000)
    ]
    memories = add(api_client, h, ns, {"messages": msgs})
    assert len(memories) == 3000
    assert [m["sources"][0] for m in memories] == [m["id"] for m in msgs]
    r = api_client.post(
        "/v1/search", json={"query": "turn 2999 weather", "namespaces": [ns], "top_k": 5}, headers=h
    )
    assert r.status_code == 200 and len(r.json()["results"]) == 5


def test_patch_history_lineage_delete(api_client: TestClient, h: dict[str, str], ns: str) -> None:
    [m] = add(api_client, h, ns, {"text": "Bob lives in Paris", "tags": ["a"]})
    mid = m["id"]
    r = api_client.patch(f"/v1/memories/{mid}", json={"text": "Bob lives in Lyon"}, headers=h)
    assert r.status_code == 200
    v2 = r.json()
    assert v2["version"] == 2 and v2["payload"]["text"] == "Bob lives in Lyon"
    r = api_client.patch(
        f"/v1/memories/{mid}", json={"tags": ["b"], "metadata": {"k": "v"}}, headers=h
    )
    assert r.json()["version"] == 3 and r.json()["tags"] == ["b"]
    assert api_client.get(f"/v1/memories/{mid}", headers=h).json()["version"] == 3

    versions = api_client.get(f"/v1/memories/{mid}/history", headers=h).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[0]["payload"]["text"] == "Bob lives in Paris"
    edges = api_client.get(f"/v1/memories/{mid}/lineage", headers=h).json()["edges"]
    assert {"kind": "VERSION_OF", "src": f"{mid}@2", "dst": f"{mid}@1"} in [
        {k: e[k] for k in ("kind", "src", "dst")} for e in edges
    ]

    r = api_client.delete(f"/v1/memories/{mid}", headers=h)
    assert r.status_code == 204 and r.content == b""
    assert api_client.get(f"/v1/memories/{mid}", headers=h).status_code == 404
    hits = api_client.post("/v1/search", json={"query": "Bob Lyon", "namespaces": [ns]}, headers=h)
    assert mid not in [x["id"] for x in hits.json()["results"]]
    assert api_client.delete(f"/v1/memories/{mid}", headers=h).status_code == 404


def test_unknown_ids_are_404(api_client: TestClient, h: dict[str, str]) -> None:
    for url in [
        "/v1/memories/00000000-0000-0000-0000-000000000000",
        "/v1/memories/nope/history",
        "/v1/memories/nope/lineage",
        "/v1/namespaces/ns_nope",
    ]:
        r = api_client.get(url, headers=h)
        assert r.status_code == 404 and r.json()["status"] == 404
    r = api_client.post("/v1/namespaces/ns_nope/memories", json={"text": "x"}, headers=h)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x" * 40_000}, "body.text"),
        ({"text": "a", "tags": [f"t{i}" for i in range(65)]}, "body.tags"),
        ({"text": "a", "metadata": {"blob": "x" * 20_000}}, "body.metadata"),
        (
            {
                "messages": [
                    {"id": "1", "role": "u", "content": "c"},
                    {"id": "2", "role": "u", "content": "y" * 40_000},
                ]
            },
            "body.messages.1.content",
        ),
    ],
)
def test_oversize_is_413_naming_the_field(
    api_client: TestClient, h: dict[str, str], ns: str, body: dict[str, Any], field: str
) -> None:
    r = api_client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_too_many_messages_is_413(
    api_client: TestClient, api_settings: Any, h: dict[str, str], ns: str
) -> None:
    n = api_settings.limits.max_messages + 1
    msgs = [{"id": str(i), "role": "u", "content": "c"} for i in range(n)]
    r = api_client.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}, headers=h)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body.messages"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"id": "1", "role": "user"}]}, "body.messages.0.content"),
        ({"messages": [{"id": "1", "role": "user", "content": ""}]}, "body.messages.0.content"),
        (
            {"messages": [{"id": "1", "role": "user", "content": "c", "timestamp": "soon"}]},
            "body.messages.0.timestamp",
        ),
        ({"messages": []}, "body.messages"),
        ({"text": "a", "semantic_type": "gossip"}, "body.semantic_type"),
        ({"text": "a", "ttl_seconds": 0}, "body.ttl_seconds"),
        ({"text": "a", "ttl_seconds": 10**40}, "body.ttl_seconds"),
        ({"text": "a", "tags": [""]}, "body.tags"),
        (
            {"text": "a", "metadata": {"x": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}},
            "body.metadata.x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",
        ),
        ({"text": None}, "body.text"),
        ({"text": "a", "extra": True}, "body.extra"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    api_client: TestClient, h: dict[str, str], ns: str, body: dict[str, Any], field: str
) -> None:
    r = api_client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert field in [e["field"] for e in problem["errors"]], problem


def test_unicode_and_odd_text_round_trips(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    text = "emoji 😀, RTL שלום, NUL \x00, zero-width \u200b, combining e\u0301"
    [m] = add(api_client, h, ns, {"text": text, "metadata": {"ключ": "値", "f": 1.5, "n": None}})
    got = api_client.get(f"/v1/memories/{m['id']}", headers=h).json()
    assert got["payload"]["text"] == text and got["metadata"] == {"ключ": "値", "f": 1.5, "n": None}


def test_patch_validation(api_client: TestClient, h: dict[str, str], ns: str) -> None:
    [m] = add(api_client, h, ns, {"text": "x"})
    url = f"/v1/memories/{m['id']}"
    assert api_client.patch(url, json={}, headers=h).status_code == 422
    assert api_client.patch(url, json={"text": ""}, headers=h).status_code == 422
    r = api_client.patch(url, json={"text": "y" * 40_000}, headers=h)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body.text"
    assert api_client.patch(url, json={"version": 9}, headers=h).status_code == 422
