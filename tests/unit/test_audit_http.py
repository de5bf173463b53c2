"""HttpAuditReader (distributed GET /v1/audit): the query and the caller's tenant
reach the governance route intact, with the service token; failures are 503."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.governance.audit import AuditEntry, AuditLog
from services.governance.query import FileAuditReader
from shared.clients.audit_http import HttpAuditReader
from shared.errors import Unavailable
from shared.ports.audit import AuditPage, AuditQuery
from shared.schemas.events import ApiDecision, make_event
from shared.settings import GovernanceSettings

pytestmark = pytest.mark.unit


def _decision(tenant: str, outcome: str, status: int) -> AuditEntry:
    data = ApiDecision(
        request_id="r", method="GET", route="/v1/namespaces", status=status, outcome=outcome
    )
    return AuditEntry(
        "audit.decision", make_event(data, source="test", tenant=tenant, namespace=None)
    )


def test_query_round_trip_with_token(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    log.append([_decision("t1", "allow", 200), _decision("t1", "deny", 404)])
    log.append([_decision("t2", "deny", 403)])
    reader = FileAuditReader(log.path)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        params = dict(request.url.params)
        tenant = params.pop("tenant")
        page = reader.query(tenant, AuditQuery.model_validate(params))
        return httpx.Response(200, json=page.model_dump(mode="json"))

    cfg = GovernanceSettings(service_token="s3cret")  # type: ignore[arg-type]
    client = httpx.Client(
        base_url="http://gov", transport=httpx.MockTransport(handler),
        headers={"X-Memgrid-Service-Token": "s3cret"},
    )  # fmt: skip
    http = HttpAuditReader(cfg, client=client)
    q = AuditQuery(outcome="deny", since=datetime(2000, 1, 1, tzinfo=UTC), limit=10)
    page = http.query("t1", q)
    assert isinstance(page, AuditPage)
    assert [r.event["data"]["status"] for r in page.records] == [404]
    assert all(r.event["tenant"] == "t1" for r in page.records)
    assert seen[0].headers["X-Memgrid-Service-Token"] == "s3cret"
    assert seen[0].url.params["tenant"] == "t1" and seen[0].url.params["outcome"] == "deny"


def test_token_header_comes_from_settings() -> None:
    http = HttpAuditReader(GovernanceSettings(service_token="tok"))  # type: ignore[arg-type]
    assert http._http.headers["X-Memgrid-Service-Token"] == "tok"
    assert str(http._http.base_url).startswith("http://127.0.0.1:6067")


def test_unreachable_or_refusing_governance_is_503() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "unauthorized"})

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    for handler in (refuse, down):
        client = httpx.Client(base_url="http://gov", transport=httpx.MockTransport(handler))
        with pytest.raises(Unavailable) as err:
            HttpAuditReader(GovernanceSettings(), client=client).query("t", AuditQuery())
        assert err.value.status == 503
