"""POST /v1/erasures and GET /v1/erasures/{id} through the public API, over the
vault in process and over its internal HTTP API (the ``api_client`` modes)."""

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


def namespace(client: TestClient, h: dict[str, str], name: str) -> str:
    return str(client.post("/v1/namespaces", json={"name": name}, headers=h).json()["id"])


def add(client: TestClient, h: dict[str, str], ns: str, text: str) -> str:
    r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": text}, headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["memories"][0]["id"])


def erase(client: TestClient, h: dict[str, str], value: str, **extra: Any) -> Any:
    body = {"subject": {"kind": "person", "value": value}, **extra}
    return client.post("/v1/erasures", json=body, headers=h)


def test_erase_a_person_and_read_the_report(
    api_client: TestClient, h: dict[str, str], make_tenant: Tenant
) -> None:
    ns = namespace(api_client, h, "crm")
    gone = add(api_client, h, ns, "Ana Lima called about her invoice")
    kept = add(api_client, h, ns, "The invoice run is on Fridays")
    r = erase(api_client, h, "ana lima")
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["cube_ids"] == [gone] and report["versions_purged"] == 1
    assert report["namespaces"] == [ns] and report["subject_kind"] == "person"
    assert "ana" not in r.text.lower()
    assert api_client.get(f"/v1/erasures/{report['id']}", headers=h).json() == report
    assert api_client.get(f"/v1/memories/{gone}", headers=h).status_code == 404
    search = {"query": "Ana Lima invoice", "namespaces": [ns], "top_k": 10}
    hits = api_client.post("/v1/search", json=search, headers=h).json()["results"]
    assert [x["id"] for x in hits] == [kept]
    # Another tenant cannot read the report.
    other = make_tenant("other")
    r = api_client.get(f"/v1/erasures/{report['id']}", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "erasure_not_found"


def test_bad_requests_are_problems_naming_the_field(
    api_client: TestClient, h: dict[str, str]
) -> None:
    r = api_client.post(
        "/v1/erasures", json={"subject": {"kind": "planet", "value": "x"}}, headers=h
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    assert r.json()["errors"][0]["field"].endswith("subject.kind")
    r = api_client.post(
        "/v1/erasures", json={"subject": {"kind": "person", "value": ""}}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("subject.value")
    r = erase(api_client, h, "Ana", namespaces=["ns_0123456789abcdef0123456789abcdef"])
    assert r.status_code == 404 and r.json()["code"] == "namespace_not_found"
    assert api_client.get("/v1/erasures/er_nope", headers=h).status_code == 404
    unauth = api_client.post("/v1/erasures", json={"subject": {"kind": "person", "value": "x"}})
    assert unauth.status_code == 401


def test_legal_hold_refuses_the_erasure_until_lifted(
    api_client: TestClient, h: dict[str, str]
) -> None:
    ns = namespace(api_client, h, "held")
    cube = add(api_client, h, ns, "Ana Lima signed the contract")
    hold = {"legal_hold": True, "legal_hold_reason": "case 42"}
    assert api_client.patch(f"/v1/namespaces/{ns}/policy", json=hold, headers=h).status_code == 200
    r = erase(api_client, h, "Ana Lima")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "legal_hold" and ns in r.json()["detail"]
    assert api_client.get(f"/v1/memories/{cube}", headers=h).status_code == 200
    lift = {"legal_hold": False}
    assert api_client.patch(f"/v1/namespaces/{ns}/policy", json=lift, headers=h).status_code == 200
    r = erase(api_client, h, "Ana Lima")
    assert r.status_code == 201 and r.json()["cube_ids"] == [cube]
