"""The API's decisions in the audit log, read through GET /v1/audit (embedded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.governance.chain import verify
from shared.settings import Settings
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit


@pytest.fixture
def embedded(api_settings: Settings) -> Iterator[TestClient]:
    from services.embedded import build_embedded

    app, close = build_embedded(api_settings)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        close()


def tenant(c: TestClient, name: str) -> dict[str, str]:
    r = c.post("/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def audit(c: TestClient, h: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    c.app.state.bus.flush()  # type: ignore[attr-defined]
    r = c.get("/v1/audit", params=params, headers=h)
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


def test_denials_and_allows_are_audited_per_tenant(
    embedded: TestClient, api_settings: Settings
) -> None:
    c = embedded
    a, b = tenant(c, "a"), tenant(c, "b")
    ns = c.post("/v1/namespaces", json={"name": "n"}, headers=a).json()["id"]
    cube = c.post(f"/v1/namespaces/{ns}/memories", json={"text": "secret plan"}, headers=a).json()[
        "memories"
    ][0]["id"]
    assert c.get(f"/v1/memories/{cube}", headers=b).status_code == 404  # b guesses a's id
    assert c.get("/v1/namespaces", headers={"Authorization": "Bearer nope"}).status_code == 401

    b_denials = audit(c, b, topic="audit.decision", outcome="deny")
    assert len(b_denials) == 1
    data = b_denials[0]["event"]["data"]
    assert data["route"] == "/v1/memories/{memory_id}" and data["status"] == 404
    assert data["path_ids"] == {"memory_id": cube} and data["code"] == "memory_not_found"
    # a's log has its own decisions and facts, not b's; no bodies anywhere.
    a_records = audit(c, a, limit=1000)
    assert {r["event"]["tenant"] for r in a_records} == {
        c.get("/v1/namespaces", headers=a).json()["namespaces"][0]["tenant"]
    }
    assert "secret plan" not in str(a_records) and "secret plan" not in str(b_denials)
    allowed = [r for r in a_records if r["topic"] == "audit.decision"]
    assert any(r["event"]["data"]["route"] == "/v1/namespaces/{namespace_id}/memories"
               and r["event"]["data"]["outcome"] == "allow" for r in allowed)  # fmt: skip
    assert any(r["topic"] == "memory.created" for r in a_records)
    # The chain over everything written is intact.
    c.app.state.bus.flush()  # type: ignore[attr-defined]
    assert verify(api_settings.data_dir / "governance" / "audit.jsonl").ok


def test_only_auditors_and_admins_read_the_audit_log(embedded: TestClient) -> None:
    c = embedded
    admin = tenant(c, "a")
    make = c.post("/v1/principals", json={"name": "m", "role": "member"}, headers=admin).json()
    member = {"Authorization": f"Bearer {make['api_key']}"}
    aud = c.post("/v1/principals", json={"name": "x", "role": "auditor"}, headers=admin).json()
    auditor = {"Authorization": f"Bearer {aud['api_key']}"}
    r = c.get("/v1/audit", headers=member)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    denied = audit(c, auditor, outcome="deny")
    assert [d["event"]["data"]["route"] for d in denied] == ["/v1/audit"]
    assert denied[0]["event"]["data"]["principal"] == make["principal"]["id"]
    assert c.get("/v1/audit", params={"limit": 0}, headers=auditor).status_code == 422
    page = audit(c, auditor, limit=2)
    nxt = c.get("/v1/audit", params={"limit": 2, "after": page[-1]["seq"]}, headers=auditor)
    assert all(r["seq"] > page[-1]["seq"] for r in nxt.json()["records"])
