"""API v1 over HTTP with the real embedded vault: search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

Tenant = Callable[[str], dict[str, str]]


@pytest.fixture
def h(make_tenant: Tenant) -> dict[str, str]:
    return make_tenant("acme")


def new_ns(client: TestClient, h: dict[str, str], name: str) -> str:
    return str(client.post("/v1/namespaces", json={"name": name}, headers=h).json()["id"])


def add(client: TestClient, h: dict[str, str], ns: str, body: dict[str, Any]) -> list[Any]:
    r = client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h)
    assert r.status_code == 201, r.text
    memories: list[Any] = r.json()["memories"]
    return memories


def search(client: TestClient, h: dict[str, str], **body: Any) -> Any:
    return client.post("/v1/search", json=body, headers=h)


def test_search_finds_and_shapes_results(api_client: TestClient, h: dict[str, str]) -> None:
    ns = new_ns(api_client, h, "n")
    msgs = [
        {
            "id": "D1:1",
            "role": "user",
            "name": "Ann",
            "content": "I adopted a cat named Biscuit",
            "timestamp": "2023-05-08T10:00:00Z",
        },
        {"id": "D1:2", "role": "user", "name": "Bob", "content": "I play the violin every morning"},
    ]
    add(api_client, h, ns, {"messages": msgs, "metadata": {"conv": "c1"}})
    r = search(api_client, h, query="cat Biscuit", namespaces=[ns], top_k=1)
    assert r.status_code == 200
    [hit] = r.json()["results"]
    assert set(hit) == {
        "id",
        "namespace",
        "text",
        "score",
        "sources",
        "metadata",
        "event_time",
        "version",
    }
    assert hit["sources"] == ["D1:1"] and hit["namespace"] == ns and hit["version"] == 1
    assert hit["text"] == "Ann: I adopted a cat named Biscuit"
    assert hit["metadata"]["conv"] == "c1"
    assert hit["event_time"] == "2023-05-08T10:00:00Z"


def test_search_spans_namespaces_and_filters(api_client: TestClient, h: dict[str, str]) -> None:
    a, b = new_ns(api_client, h, "a"), new_ns(api_client, h, "b")
    add(api_client, h, a, {"text": "the deploy key rotates monthly", "tags": ["ops"]})
    add(
        api_client,
        h,
        b,
        {"text": "the deploy pipeline runs nightly", "tags": ["ci"], "metadata": {"team": "build"}},
    )
    both = search(api_client, h, query="deploy", namespaces=[a, b, a]).json()["results"]
    assert {x["namespace"] for x in both} == {a, b}
    tagged = search(api_client, h, query="deploy", namespaces=[a, b], filters={"tags_any": ["ci"]})
    assert [x["namespace"] for x in tagged.json()["results"]] == [b]
    meta = search(
        api_client, h, query="deploy", namespaces=[a, b], filters={"metadata": {"team": "build"}}
    )
    assert [x["namespace"] for x in meta.json()["results"]] == [b]


def test_search_unknown_or_foreign_namespace_is_404(
    api_client: TestClient, make_tenant: Tenant, h: dict[str, str]
) -> None:
    other = make_tenant("other")
    theirs = new_ns(api_client, other, "theirs")
    assert search(api_client, h, query="x", namespaces=[theirs]).status_code == 404
    assert search(api_client, h, query="x", namespaces=["ns_missing"]).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"query": "q" * 5000}, 413, "body.query"),
        ({"namespaces": [f"ns_{i}" for i in range(51)]}, 413, "body.namespaces"),
        ({"top_k": 101}, 422, "body.top_k"),
        ({"top_k": 0}, 422, "body.top_k"),
        ({"top_k": 10**100}, 422, "body.top_k"),
        ({"top_k": "ten"}, 422, "body.top_k"),
        ({"query": ""}, 422, "body.query"),
        ({"namespaces": "all"}, 422, "body.namespaces"),
        ({"filters": {"metadata": {"k": [1]}}}, 422, "body.filters.metadata.k"),
        ({"filters": {"metadata": {"k": 2**64}}}, 422, "body.filters.metadata.k"),
        ({"filters": {"semantic_type": ["nope"]}}, 422, "body.filters.semantic_type.0"),
        ({"filters": {"event_time_from": "yesterday"}}, 422, "body.filters.event_time_from"),
        ({"filters": {"unknown": 1}}, 422, "body.filters.unknown"),
    ],
)
def test_search_bad_requests_name_the_field(
    api_client: TestClient, h: dict[str, str], body: dict[str, Any], status: int, field: str
) -> None:
    ns = new_ns(api_client, h, "n")
    r = search(api_client, h, **{"query": "q", "namespaces": [ns], **body})
    assert r.status_code == status, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def test_search_with_time_filters(api_client: TestClient, h: dict[str, str]) -> None:
    ns = new_ns(api_client, h, "n")
    add(api_client, h, ns, {"text": "trip to Rome", "event_time": "2023-01-10T00:00:00Z"})
    add(api_client, h, ns, {"text": "trip to Oslo", "event_time": "2023-06-10T00:00:00Z"})
    r = search(
        api_client,
        h,
        query="trip",
        namespaces=[ns],
        filters={
            "event_time_from": "2023-06-01T00:00:00Z",
            "event_time_to": "2023-07-01T00:00:00Z",
        },
    )
    assert [x["text"] for x in r.json()["results"]] == ["trip to Oslo"]
