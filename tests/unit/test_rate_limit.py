"""Per-key rate limits: 429 ``rate_limited`` with Retry-After, audited as a deny."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shared.ports.audit import AuditQuery
from shared.settings import Settings
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    from services.embedded import build_embedded

    settings = api_settings.model_copy(
        update={
            "limits": api_settings.limits.model_copy(
                update={"rate_limit_enabled": True, "rate_limit": "100/minute;4/second"}
            )
        }
    )
    app, close = build_embedded(settings)
    try:
        with TestClient(app) as c:
            yield c
    finally:
        close()


def test_over_the_limit_is_429_per_key_and_audited(client: TestClient) -> None:
    c = client
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    keys = [c.post("/v1/tenants", json={"name": n}, headers=admin).json()["api_key"] for n in "ab"]
    a, b = ({"Authorization": f"Bearer {k}"} for k in keys)
    statuses = [c.get("/v1/namespaces", headers=a).status_code for _ in range(6)]
    assert statuses[:4] == [200] * 4 and statuses[4:] == [429, 429]
    r = c.get("/v1/namespaces", headers=a)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    # Another key has its own budget; probes are not limited.
    assert c.get("/v1/namespaces", headers=b).status_code == 200
    assert c.get("/healthz").status_code == 200

    # The 429s are decisions (deny) in a's tenant's audit log; the key is never in one.
    c.app.state.bus.flush()  # type: ignore[attr-defined]
    reader = c.app.state.audit  # type: ignore[attr-defined]
    page = reader.query(_tenant_of(c, keys[0]), AuditQuery(outcome="deny", limit=1000))
    limited = [rec for rec in page.records if rec.event["data"]["status"] == 429]
    assert len(limited) == 3
    assert all(rec.event["data"]["code"] == "rate_limited" for rec in limited)
    assert keys[0] not in str(page.records)


def test_unauthenticated_requests_are_limited_by_address(client: TestClient) -> None:
    codes = [client.get("/v1/namespaces").status_code for _ in range(5)]
    assert codes == [401] * 4 + [429]


def _tenant_of(c: TestClient, key: str) -> str:
    from shared.security import parse_api_key

    prefix = parse_api_key(key)
    assert prefix
    vault = c.app.state.vault  # type: ignore[attr-defined]
    record = vault.find_api_key(prefix)
    return str(record.tenant)


@pytest.mark.parametrize("bad", ["lots", "5/fortnight", "5/second;", "/minute"])
def test_a_malformed_rate_limit_is_a_settings_error(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(limits={"rate_limit": bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["100/second;5000/minute", "10 per 2 minutes", "7/hour"])
def test_well_formed_rate_limits_parse(good: str) -> None:
    from limits import parse_many

    settings = Settings(limits={"rate_limit": good})  # type: ignore[arg-type]
    assert parse_many(settings.limits.rate_limit)
