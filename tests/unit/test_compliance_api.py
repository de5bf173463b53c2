"""Compliance through the public API, embedded and split (interface → HttpVault → vault):
PII policies at ingest, policy changes, legal hold, watermarked exports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.compliance import watermark

pytestmark = pytest.mark.unit

Tenant = Callable[[str], dict[str, str]]
EMAIL_TEXT = "Ana's address is ana.silva@example.com"
CARD = "4111 1111 1111 1111"


@pytest.fixture
def h(make_tenant: Tenant) -> dict[str, str]:
    return make_tenant("acme")


@pytest.fixture
def ns(api_client: TestClient, h: dict[str, str]) -> str:
    return str(api_client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"])


def policy(client: TestClient, h: dict[str, str], ns: str, **changes: Any) -> Any:
    r = client.patch(f"/v1/namespaces/{ns}/policy", json=changes, headers=h)
    assert r.status_code == 200, r.text
    return r.json()["policy"]


def add(client: TestClient, h: dict[str, str], ns: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h)


def search(client: TestClient, h: dict[str, str], ns: str, query: str) -> list[str]:
    r = client.post("/v1/search", json={"query": query, "namespaces": [ns]}, headers=h)
    assert r.status_code == 200, r.text
    return [hit["text"] for hit in r.json()["results"]]


def test_allow_is_the_default_and_tags_the_cube(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    got = api_client.get(f"/v1/namespaces/{ns}", headers=h).json()
    assert got["policy"] == {
        "pii": "allow",
        "retention_days": None,
        "legal_hold": False,
        "legal_hold_reason": "",
    }
    r = add(api_client, h, ns, {"text": f"{EMAIL_TEXT}, card {CARD}"})
    assert r.status_code == 201, r.text
    [m] = r.json()["memories"]
    assert m["payload"]["text"] == f"{EMAIL_TEXT}, card {CARD}"
    assert m["governance"]["sensitivity_tags"] == ["pii:card", "pii:email"]
    clean = add(api_client, h, ns, {"text": "Ana likes green tea"}).json()["memories"][0]
    assert clean["governance"]["sensitivity_tags"] == []


def test_redact_replaces_findings_everywhere(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    assert policy(api_client, h, ns, pii="redact")["pii"] == "redact"
    r = add(
        api_client,
        h,
        ns,
        {
            "messages": [
                {"id": "m1", "role": "user", "name": "Ana", "content": "hi there"},
                {"id": "m2", "role": "user", "name": "Ana", "content": f"my card is {CARD}"},
            ]
        },
    )
    assert r.status_code == 201, r.text
    second = r.json()["memories"][1]
    assert second["payload"]["text"] == "Ana: my card is [REDACTED:card]"
    assert second["metadata"]["content"] == "my card is [REDACTED:card]"
    assert second["governance"]["sensitivity_tags"] == ["pii:card"]
    assert all("4111" not in t for t in search(api_client, h, ns, "card 4111 1111"))
    # An edit is screened too.
    patched = api_client.patch(
        f"/v1/memories/{second['id']}", json={"text": f"mail {EMAIL_TEXT}"}, headers=h
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["payload"]["text"] == "mail Ana's address is [REDACTED:email]"
    assert patched.json()["governance"]["sensitivity_tags"] == ["pii:email"]


def test_reject_names_the_field_and_writes_nothing(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    policy(api_client, h, ns, pii="reject")
    r = add(
        api_client,
        h,
        ns,
        {
            "messages": [
                {"id": "m1", "role": "user", "content": "the tea is green"},
                {"id": "m2", "role": "user", "content": "token ghp_" + "a1B2" * 9},
            ]
        },
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "pii_rejected"
    assert body["errors"] == [
        {"field": "body.messages.1.content", "message": "contains secret:token"}
    ]
    assert "a1B2" not in r.text  # the value is never echoed
    assert search(api_client, h, ns, "tea green") == []  # nothing of the batch was stored
    r = add(api_client, h, ns, {"text": EMAIL_TEXT})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.text"
    ok = add(api_client, h, ns, {"text": "the tea is green"})
    assert ok.status_code == 201
    cid = ok.json()["memories"][0]["id"]
    bad = api_client.patch(f"/v1/memories/{cid}", json={"text": EMAIL_TEXT}, headers=h)
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"field": "body.text", "message": "contains pii:email"}]


def test_policy_patch_validates_and_keeps_other_fields(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    policy(api_client, h, ns, pii="redact", retention_days=30)
    got = policy(api_client, h, ns, legal_hold=True, legal_hold_reason="case 42")
    assert got == {
        "pii": "redact",
        "retention_days": 30,
        "legal_hold": True,
        "legal_hold_reason": "case 42",
    }
    assert policy(api_client, h, ns, retention_days=None)["retention_days"] is None
    bad = api_client.patch(f"/v1/namespaces/{ns}/policy", json={"pii": "shred"}, headers=h)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].endswith("pii")
    bad = api_client.patch(f"/v1/namespaces/{ns}/policy", json={"retention_days": 0}, headers=h)
    assert bad.status_code == 422


def test_retention_caps_the_expiry(api_client: TestClient, h: dict[str, str], ns: str) -> None:
    policy(api_client, h, ns, retention_days=1)
    [m] = add(api_client, h, ns, {"text": "short lived", "ttl_seconds": 7 * 86400}).json()[
        "memories"
    ]
    assert m["governance"]["lifespan"]["ttl_seconds"] == 86400
    [m] = add(api_client, h, ns, {"text": "no ttl asked"}).json()["memories"]
    assert m["governance"]["lifespan"]["ttl_seconds"] == 86400
    [m] = add(api_client, h, ns, {"text": "shorter", "ttl_seconds": 60}).json()["memories"]
    assert m["governance"]["lifespan"]["ttl_seconds"] == 60


def test_legal_hold_refuses_delete_and_ttl(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    cid = add(api_client, h, ns, {"text": "evidence"}).json()["memories"][0]["id"]
    policy(api_client, h, ns, legal_hold=True, legal_hold_reason="litigation")
    r = api_client.delete(f"/v1/memories/{cid}", headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "legal_hold"
    assert ns in r.json()["detail"]
    r = add(api_client, h, ns, {"text": "more", "ttl_seconds": 60})
    assert r.status_code == 409
    assert r.json()["code"] == "legal_hold"
    assert add(api_client, h, ns, {"text": "more"}).status_code == 201
    policy(api_client, h, ns, legal_hold=False)
    assert api_client.delete(f"/v1/memories/{cid}", headers=h).status_code == 204


def test_export_is_watermarked_and_recorded(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    texts = ["Ana lives in Lisbon", "Bo likes " + "very " * 40 + "long walks"]
    for t in texts:
        add(api_client, h, ns, {"text": t})
    r = api_client.get(f"/v1/namespaces/{ns}/export", headers=h)
    assert r.status_code == 200, r.text
    export = r.json()
    export_id = export["export"]["id"]
    assert export["export"]["count"] == 2
    assert export["export"]["namespace"] == ns
    got = [m["text"] for m in export["memories"]]
    assert sorted(watermark.strip(t) for t in got) == sorted(texts)
    assert all(t not in texts for t in got)  # every text carries a mark
    for t in got:
        assert watermark.decode(t) == [export_id]
    record = api_client.get(f"/v1/exports/{export_id}", headers=h)
    assert record.status_code == 200
    assert record.json() == export["export"]
    second = api_client.get(f"/v1/namespaces/{ns}/export", headers=h).json()
    assert second["export"]["id"] != export_id


def test_other_tenants_see_nothing(
    api_client: TestClient, h: dict[str, str], ns: str, make_tenant: Tenant
) -> None:
    add(api_client, h, ns, {"text": "secret plans"})
    export_id = api_client.get(f"/v1/namespaces/{ns}/export", headers=h).json()["export"]["id"]
    other = make_tenant("globex")
    assert api_client.get(f"/v1/namespaces/{ns}/export", headers=other).status_code == 404
    assert api_client.get(f"/v1/exports/{export_id}", headers=other).status_code == 404
    r = api_client.patch(f"/v1/namespaces/{ns}/policy", json={"legal_hold": True}, headers=other)
    assert r.status_code == 404
    assert api_client.get(f"/v1/namespaces/{ns}", headers=h).json()["policy"]["legal_hold"] is False


def test_context_does_not_tag_the_next_message(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    r = add(
        api_client,
        h,
        ns,
        {
            "messages": [
                {"id": "m1", "role": "user", "content": f"mail {EMAIL_TEXT}"},
                {"id": "m2", "role": "user", "content": "and the tea is green"},
            ]
        },
    )
    tags = [m["governance"]["sensitivity_tags"] for m in r.json()["memories"]]
    assert tags == [["pii:email"], []]


def test_reject_names_the_metadata_when_the_finding_is_there(
    api_client: TestClient, h: dict[str, str], ns: str
) -> None:
    policy(api_client, h, ns, pii="reject")
    r = add(api_client, h, ns, {"text": "the tea is green", "metadata": {"by": EMAIL_TEXT}})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body.metadata", "message": "contains pii:email"}]
