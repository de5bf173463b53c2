"""Memory lifecycle through the public API, with the scheduler's side (expire_due,
transition, merge, near_duplicates) called on the vault in process ("embedded")
or over the vault's internal HTTP API through HttpVault ("split")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.interface.app import create_app
from services.vault.app import create_app as create_vault_app
from services.vault.factory import build_vault
from shared.adapters import create_event_bus
from shared.clients.vault_http import HttpVault
from shared.errors import MemgridError
from shared.ports.bus import EventBus
from shared.ports.vault import VaultAPI
from shared.schemas.memcube import LifecycleState
from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.unit.test_vault import Clock, Recorder

pytestmark = pytest.mark.unit

S = LifecycleState
TOKEN = "internal-token"


@dataclass
class World:
    client: TestClient  # the public API
    system: VaultAPI  # what the scheduler holds: the Vault, or HttpVault
    internal: TestClient | None  # the vault's internal API (split only)
    clock: Clock
    bus: EventBus
    rec: Recorder
    tenant: str
    h: dict[str, str]
    ns: str
    drain: Any

    def add(self, **body: Any) -> dict[str, Any]:
        r = self.client.post(f"/v1/namespaces/{self.ns}/memories", json=body, headers=self.h)
        assert r.status_code == 201, r.text
        cube: dict[str, Any] = r.json()["memories"][0]
        return cube

    def search(self, query: str) -> list[str]:
        r = self.client.post(
            "/v1/search", json={"query": query, "namespaces": [self.ns]}, headers=self.h
        )
        assert r.status_code == 200, r.text
        return [hit["id"] for hit in r.json()["results"]]

    def get(self, path: str) -> Any:
        r = self.client.get(f"/v1/memories/{path}", headers=self.h)
        assert r.status_code == 200, r.text
        return r.json()

    def published(self, topic: str) -> list[dict[str, Any]]:
        self.drain()
        self.bus.flush()
        return [e.data for e in self.rec.events if e.topic == topic]


@pytest.fixture(params=["embedded", "split"])
def w(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        embedder={"backend": "hashing"},  # type: ignore[arg-type]
        vault={"service_token": TOKEN},  # type: ignore[arg-type]
    )
    bus = create_event_bus(settings.bus)
    clock = Clock()
    vault = build_vault(settings, bus=bus, clock=clock)
    vault.start()
    rec = Recorder(bus, ["memory.created", "memory.updated", "memory.expired"])
    internal: TestClient | None = None
    system: VaultAPI = vault
    try:
        if request.param == "split":
            internal = TestClient(create_vault_app(settings, vault))
            system = HttpVault(settings.vault, client=internal)
        with TestClient(create_app(settings, system)) as client:
            r = client.post(
                "/v1/tenants",
                json={"name": "acme"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            h = {"Authorization": f"Bearer {r.json()['api_key']}"}
            ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
            yield World(
                client, system, internal, clock, bus, rec, r.json()["id"], h, ns, vault.relay.drain
            )
    finally:
        if internal is not None:
            internal.close()
        vault.close()
        bus.close()


def test_ttl_memory_leaves_search_and_expires_once(w: World) -> None:
    short = w.add(text="the door code is 4711", ttl_seconds=60)
    stays = w.add(text="the door is painted red")
    assert short["governance"]["lifespan"]["expires_at"] == "2025-01-01T00:01:00Z"
    assert short["id"] in w.search("door code")
    assert w.system.expire_due(w.clock.now) == []

    w.clock.now += timedelta(seconds=61)
    assert short["id"] not in w.search("door code")  # hidden at query time already
    assert w.system.expire_due(w.clock.now) == [short["id"]]
    assert w.system.expire_due(w.clock.now) == []  # a second run finds nothing to do

    found = w.search("door code")
    assert short["id"] not in found and stays["id"] in found
    cube = w.get(short["id"])
    assert cube["lifecycle"]["state"] == "expired" and cube["lifecycle"]["reason"] == "ttl"
    assert cube["version"] == 2
    history = w.get(f"{short['id']}/history")["versions"]
    assert [v["lifecycle"]["state"] for v in history] == ["generated", "expired"]
    expired = w.published("memory.expired")
    assert expired == [
        {"cube_id": short["id"], "version": 2, "reason": "ttl", "previous_state": "generated"}
    ]
    assert w.get(stays["id"])["lifecycle"]["state"] == "generated"


def test_near_duplicates_merge_into_one_searchable_memory(w: World) -> None:
    a = w.add(text="Ana moved to Lisbon in March", tags=["home"])
    w.clock.now += timedelta(minutes=5)
    b = w.add(text="Ana moved to Lisbon in March 2024", tags=["move"])
    c = w.add(text="Bob plays the violin every morning")

    dups = w.system.near_duplicates(w.tenant, a["id"], 0.8)
    assert [d for d, _ in dups] == [b["id"]] and dups[0][1] >= 0.8
    assert w.system.near_duplicates(w.tenant, c["id"], 0.8) == []

    merged = w.system.merge(w.tenant, [a["id"], b["id"]], "near-duplicate")
    assert merged.text == b["payload"]["text"] and merged.tags == ["home", "move"]
    found = w.search("Ana Lisbon March")
    assert merged.id in found and a["id"] not in found and b["id"] not in found
    for original in (a, b):  # retired, not lost
        cube = w.get(original["id"])
        assert cube["lifecycle"]["state"] == "merged"
        assert cube["lifecycle"]["reason"] == "near-duplicate"
        versions = w.get(f"{original['id']}/history")["versions"]
        assert [v["lifecycle"]["state"] for v in versions] == ["generated", "merged"]
    lineage = w.get(f"{merged.id}/lineage")
    into = {(e["src"], e["dst"]) for e in lineage["edges"] if e["kind"] == "MERGED_INTO"}
    assert into == {(f"{a['id']}@1", f"{merged.id}@1"), (f"{b['id']}@1", f"{merged.id}@1")}
    assert w.get(merged.id)["metadata"]["merged_from"] == [f"{a['id']}@1", f"{b['id']}@1"]
    created = [e["cube_id"] for e in w.published("memory.created")]
    assert created.count(merged.id) == 1
    updated = w.published("memory.updated")
    assert sorted(u["cube_id"] for u in updated) == sorted([a["id"], b["id"]])
    assert all(u["changed"] == ["lifecycle"] for u in updated)


def test_illegal_transition_is_a_409(w: World) -> None:
    cube = w.add(text="a passing thought", ttl_seconds=1)
    w.clock.now += timedelta(seconds=2)
    assert w.system.expire_due(w.clock.now) == [cube["id"]]
    with pytest.raises(MemgridError) as info:
        w.system.transition(w.tenant, cube["id"], S.activated, "hot again")
    assert (info.value.status, info.value.code) == (409, "illegal_transition")
    assert "expired" in info.value.detail and "activated" in info.value.detail
    with pytest.raises(MemgridError) as info:  # another tenant's id: not found
        w.system.transition("t_someone_else", cube["id"], S.deleted, "erase")
    assert (info.value.status, info.value.code) == (404, "memory_not_found")
    done = w.system.transition(w.tenant, cube["id"], S.deleted, "erasure")
    assert done.lifecycle.state == S.deleted and done.version == 3
    assert w.client.get(f"/v1/memories/{cube['id']}", headers=w.h).status_code == 404


def test_demotion_round_trip_keeps_the_memory_searchable(w: World) -> None:
    cube = w.add(text="Ana prefers green tea")
    hot = w.system.transition(w.tenant, cube["id"], S.activated, "in the hot set")
    assert hot.lifecycle.state == S.activated and hot.version == 2
    assert cube["id"] in w.search("green tea")
    cold = w.system.transition(w.tenant, cube["id"], S.generated, "KV cache evicted")
    assert cold.lifecycle.state == S.generated and cold.version == 3
    assert cube["id"] in w.search("green tea")
    assert [u["changed"] for u in w.published("memory.updated")] == [["lifecycle"]] * 2


def test_bad_input_is_a_4xx_problem(w: World) -> None:
    a = w.add(text="one")

    def refused(call: Any) -> MemgridError:
        with pytest.raises(MemgridError) as info:
            call()
        assert 400 <= info.value.status < 500
        return info.value

    assert refused(lambda: w.system.merge(w.tenant, [a["id"]], "x")).status == 422
    assert refused(lambda: w.system.merge(w.tenant, [a["id"], a["id"]], "x")).status == 422
    assert refused(lambda: w.system.merge(w.tenant, [a["id"], "gone"], "x")).status == 404
    assert refused(lambda: w.system.near_duplicates(w.tenant, a["id"], 1.5)).status == 422
    assert refused(lambda: w.system.near_duplicates(w.tenant, "gone", 0.5)).status == 404
    bad_reason = refused(lambda: w.system.transition(w.tenant, a["id"], S.archived, ""))
    assert bad_reason.status == 422 and bad_reason.errors[0].field == "body.reason"
    naive = w.clock.now.replace(tzinfo=None)
    assert refused(lambda: w.system.expire_due(naive)).status == 422


def test_internal_api_speaks_problem_json(w: World) -> None:
    if w.internal is None:
        pytest.skip("the internal API exists in split mode only")
    tok = {"X-Memgrid-Service-Token": TOKEN}
    cube = w.add(text="x")
    base = f"/internal/v1/tenants/{w.tenant}/memories/{cube['id']}"
    r = w.internal.post(f"{base}/transition", json={"to": "generated", "reason": "x"}, headers=tok)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["code"], body["from"], body["to"]) == (
        "illegal_transition",
        "generated",
        "generated",
    )
    r = w.internal.post(f"{base}/transition", json={"to": "melted", "reason": "x"}, headers=tok)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.to"
    r = w.internal.get(f"{base}/near-duplicates", params={"threshold": "nan"}, headers=tok)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.threshold"
    r = w.internal.post(
        f"/internal/v1/tenants/{w.tenant}/merges", json={"cube_ids": [cube["id"]], "reason": "x"}
    )
    assert r.status_code == 401  # the service token guards the system operations too
    r = w.internal.post(
        "/internal/v1/lifecycle/expire-due", json={"now": "2025-01-01"}, headers=tok
    )
    assert r.status_code == 422
