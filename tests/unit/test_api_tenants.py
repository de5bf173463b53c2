"""API v1 over HTTP with the real embedded vault: tenants, keys, namespaces, isolation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit

Tenant = Callable[[str], dict[str, str]]


def test_healthz_readyz_docs(api_client: TestClient) -> None:
    assert api_client.get("/healthz").json() == {"status": "ok"}
    assert api_client.get("/readyz").status_code == 200
    assert api_client.get("/openapi.json").json()["info"]["title"] == "memgrid"
    assert api_client.get("/docs").status_code == 200


def test_create_tenant_returns_a_working_key(api_client: TestClient) -> None:
    r = api_client.post(
        "/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "name", "api_key"} and body["name"] == "acme"
    ok = api_client.get("/v1/namespaces", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert ok.status_code == 200 and ok.json() == {"namespaces": []}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token root-test-key"}],
)
def test_tenants_without_the_admin_key_are_401(
    api_client: TestClient, headers: dict[str, str]
) -> None:
    r = api_client.post("/v1/tenants", json={"name": "acme"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthorized"


def test_a_tenant_key_cannot_create_tenants(api_client: TestClient, make_tenant: Tenant) -> None:
    h = make_tenant("acme")
    assert api_client.post("/v1/tenants", json={"name": "evil"}, headers=h).status_code == 403


def test_bad_tenant_names_are_422(api_client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for name in ["", " lead", "x" * 200, "a/b", None, 5]:
        r = api_client.post("/v1/tenants", json={"name": name}, headers=admin)
        assert r.status_code == 422, name
        assert r.json()["errors"][0]["field"] == "body.name"


def test_tenant_routes_need_a_valid_key(api_client: TestClient, make_tenant: Tenant) -> None:
    h = make_tenant("acme")
    forged = {"Authorization": h["Authorization"][:-3] + "abc"}
    for headers in [{}, forged, {"Authorization": "Bearer mg_0123456789ab_" + "x" * 43}]:
        r = api_client.get("/v1/namespaces", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = api_client.post("/v1/search", json={"query": "q", "namespaces": ["x"]}, headers=headers)
        assert r.status_code == 401


def test_namespaces_create_list_get(api_client: TestClient, make_tenant: Tenant) -> None:
    h = make_tenant("acme")
    r = api_client.post(
        "/v1/namespaces", json={"name": "team-a", "description": "Team A memory"}, headers=h
    )
    assert r.status_code == 201
    ns = r.json()
    assert ns["name"] == "team-a" and ns["description"] == "Team A memory" and ns["id"]
    api_client.post("/v1/namespaces", json={"name": "agent-1"}, headers=h)
    listed = api_client.get("/v1/namespaces", headers=h).json()["namespaces"]
    assert {n["name"] for n in listed} == {"team-a", "agent-1"}
    assert api_client.get(f"/v1/namespaces/{ns['id']}", headers=h).json() == ns


def test_namespace_validation(api_client: TestClient, make_tenant: Tenant) -> None:
    h = make_tenant("acme")
    r = api_client.post("/v1/namespaces", json={"name": "ok", "description": "d" * 3000}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.description"
    r = api_client.post("/v1/namespaces", json={"nom": "x"}, headers=h)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"body.name", "body.nom"}


def test_tenants_are_isolated(api_client: TestClient, make_tenant: Tenant) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    ns = api_client.post("/v1/namespaces", json={"name": "secret"}, headers=a).json()["id"]
    mem = api_client.post(
        f"/v1/namespaces/{ns}/memories", json={"text": "the vault code is 1234"}, headers=a
    ).json()["memories"][0]["id"]

    assert api_client.get("/v1/namespaces", headers=b).json() == {"namespaces": []}
    for method, url, body in [
        ("GET", f"/v1/namespaces/{ns}", None),
        ("POST", f"/v1/namespaces/{ns}/memories", {"text": "planted"}),
        ("GET", f"/v1/memories/{mem}", None),
        ("PATCH", f"/v1/memories/{mem}", {"text": "changed"}),
        ("DELETE", f"/v1/memories/{mem}", None),
        ("GET", f"/v1/memories/{mem}/history", None),
        ("GET", f"/v1/memories/{mem}/lineage", None),
        ("POST", "/v1/search", {"query": "vault code", "namespaces": [ns]}),
    ]:
        r = api_client.request(method, url, json=body, headers=b)
        assert r.status_code == 404, (method, url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    # ...and nothing changed for the owner.
    cube = api_client.get(f"/v1/memories/{mem}", headers=a).json()
    assert cube["version"] == 1 and cube["payload"]["text"] == "the vault code is 1234"
