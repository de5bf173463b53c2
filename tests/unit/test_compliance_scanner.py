"""The compliance scanner (services.governance.compliance): counts from the facts,
idempotent and order-proof, on the in-process bus and end to end in embedded mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.governance.compliance import ComplianceCounts, subscribe_scanner
from shared.adapters import create_event_bus
from shared.schemas.events import (
    EventData,
    EventEnvelope,
    MemoryCreated,
    MemoryDeleted,
    MemoryExpired,
    MemoryUpdated,
    make_event,
)
from shared.schemas.memcube import Origin, SemanticType, Tier
from shared.settings import Settings

pytestmark = pytest.mark.unit


def ev(data: EventData, tenant: str = "t1", namespace: str = "ns1") -> EventEnvelope:
    return make_event(data, source="tests", tenant=tenant, namespace=namespace)


def created(cube: str, tags: list[str], **kw: str) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube,
        version=1,
        tier=Tier.plaintext,
        origin=Origin.user_input,
        semantic_type=SemanticType.fact,
        sensitivity_tags=tags,
    )
    return ev(data, **kw)


def updated(cube: str, version: int, tags: list[str]) -> EventEnvelope:
    data = MemoryUpdated(
        cube_id=cube,
        version=version,
        previous_version=version - 1,
        changed=["text"],
        sensitivity_tags=tags,
    )
    return ev(data)


@pytest.fixture
def counts(tmp_path: Path) -> Iterator[ComplianceCounts]:
    c = ComplianceCounts(tmp_path / "governance" / "compliance.db")
    yield c
    c.close()


def test_counts_by_tenant_namespace_and_kind(counts: ComplianceCounts) -> None:
    counts.apply(
        [
            created("a", ["pii:email", "pii:phone"]),
            created("b", ["pii:email"]),
            created("c", []),
            created("d", ["secret:token"], namespace="ns2"),
            created("e", ["pii:card"], tenant="t2"),
        ]
    )
    assert counts.stats("t1") == {
        "tenants": {
            "t1": {
                "ns1": {"sensitive_memories": 2, "by_kind": {"pii:email": 2, "pii:phone": 1}},
                "ns2": {"sensitive_memories": 1, "by_kind": {"secret:token": 1}},
            }
        }
    }
    assert set(counts.stats()["tenants"]) == {"t1", "t2"}
    assert counts.stats("nobody") == {"tenants": {}}


def test_updates_replace_deletes_and_expiry_remove(counts: ComplianceCounts) -> None:
    counts.apply([created("a", ["pii:email"]), created("b", ["pii:card"])])
    counts.apply([updated("a", 2, ["secret:token"])])
    counts.apply([ev(MemoryDeleted(cube_id="b", version=2))])
    assert counts.stats("t1")["tenants"]["t1"]["ns1"] == {
        "sensitive_memories": 1,
        "by_kind": {"secret:token": 1},
    }
    counts.apply([ev(MemoryExpired(cube_id="a", version=3, reason="ttl"))])
    assert counts.stats("t1") == {"tenants": {}}


def test_duplicates_and_stale_versions_change_nothing(counts: ComplianceCounts) -> None:
    assert counts.apply([created("a", ["pii:email"]), updated("a", 3, ["pii:iban"])]) == 2
    # A redelivery, and a late version 2: both older than what is recorded.
    assert counts.apply([created("a", ["pii:email"]), updated("a", 2, ["pii:phone"])]) == 0
    assert counts.stats("t1")["tenants"]["t1"]["ns1"]["by_kind"] == {"pii:iban": 1}


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = ComplianceCounts(path)
    first.apply([created("a", ["pii:email"])])
    first.close()
    again = ComplianceCounts(path)
    try:
        again.apply([created("a", ["pii:email"])])  # redelivered after the restart
        assert again.stats("t1")["tenants"]["t1"]["ns1"]["sensitive_memories"] == 1
    finally:
        again.close()


def test_subscribed_on_the_in_process_bus(counts: ComplianceCounts) -> None:
    bus = create_event_bus(Settings().bus)
    sub = subscribe_scanner(bus, counts)
    try:
        bus.publish("memory.created", created("a", ["pii:email"]), key="a")
        bus.flush()
        assert counts.stats("t1")["tenants"]["t1"]["ns1"]["by_kind"] == {"pii:email": 1}
    finally:
        sub.close()
        bus.close()


def test_embedded_mode_counts_what_the_api_ingests(api_settings: Settings) -> None:
    from services.embedded import build_embedded
    from tests.conftest import ADMIN_KEY

    app, close = build_embedded(api_settings)
    try:
        with TestClient(app) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            t = client.post("/v1/tenants", json={"name": "acme"}, headers=admin).json()
            h = {"Authorization": f"Bearer {t['api_key']}"}
            ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
            body = {"text": "write to ana@example.com or call +1 415-555-2671"}
            assert client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=h).is_success
            app.state.vault.relay.drain()
            app.state.bus.flush()
            stats = app.state.compliance_counts.stats(t["id"])
            assert stats["tenants"][t["id"]][ns] == {
                "sensitive_memories": 1,
                "by_kind": {"pii:email": 1, "pii:phone": 1},
            }
    finally:
        close()
