"""GET /v1/memories/{id}/usage through the public API: the embedded scheduler on
the in-process bus (ticked by hand with the injected clock), and the HTTP client
of a distributed scheduler (served by a mock transport, or down)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.embedded import build_embedded
from services.interface.app import create_app
from services.scheduler.inproc import EmbeddedScheduler
from services.vault.factory import build_vault
from shared.adapters import create_event_bus
from shared.clients.scheduler_http import HttpScheduler
from shared.clients.scheduler_inproc import InProcessScheduler
from shared.errors import Unavailable
from shared.ports.bus import EventBus
from shared.ports.scheduler import SchedulerAPI
from shared.schemas.events import MemoryPromoted, make_event
from shared.schemas.memcube import Tier
from shared.settings import SchedulerSettings, Settings
from tests.conftest import ADMIN_KEY
from tests.unit.test_vault import Clock, Recorder

pytestmark = pytest.mark.unit

# Two cubes make a hot set; the tick thread never runs (the tests tick).
SCHEDULER = {"policy": {"hot_min_cubes": 2}, "tick_interval_s": 86_400}


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        embedder={"backend": "hashing"},  # type: ignore[arg-type]
        scheduler=SCHEDULER,  # type: ignore[arg-type]
        **extra,
    )


def new_tenant(client: TestClient, name: str) -> tuple[dict[str, str], str]:
    r = client.post(
        "/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 201, r.text
    h = {"Authorization": f"Bearer {r.json()['api_key']}"}
    ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
    return h, ns


@dataclass
class World:
    client: TestClient
    scheduler: EmbeddedScheduler
    bus: EventBus
    clock: Clock
    rec: Recorder
    h: dict[str, str]
    ns: str
    drain: Any

    def add(self, text: str, **body: Any) -> str:
        r = self.client.post(
            f"/v1/namespaces/{self.ns}/memories", json={"text": text, **body}, headers=self.h
        )
        assert r.status_code == 201, r.text
        cube_id: str = r.json()["memories"][0]["id"]
        return cube_id

    def search(self, query: str) -> list[str]:
        body = {"query": query, "namespaces": [self.ns]}
        r = self.client.post("/v1/search", json=body, headers=self.h)
        assert r.status_code == 200, r.text
        return [hit["id"] for hit in r.json()["results"]]

    def settle(self) -> None:
        """Every event written so far has reached the scheduler."""
        self.drain()
        self.bus.flush()

    def usage(self, cube_id: str, h: dict[str, str] | None = None) -> httpx.Response:
        self.settle()
        return self.client.get(f"/v1/memories/{cube_id}/usage", headers=h or self.h)


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    """The embedded composition (vault, bus, scheduler) with the scheduler reached
    through the port, as services/embedded.py wires it, but ticked by the test."""
    settings = settings_for(tmp_path)
    bus = create_event_bus(settings.bus)
    clock = Clock()
    vault = build_vault(settings, bus=bus, clock=clock)
    vault.start()
    rec = Recorder(bus, ["memory.created"])
    scheduler = EmbeddedScheduler(bus, settings.scheduler, vault=vault, clock=clock)
    scheduler.start(ticking=False)
    try:
        with TestClient(create_app(settings, vault, InProcessScheduler(scheduler))) as client:
            h, ns = new_tenant(client, "acme")
            yield World(client, scheduler, bus, clock, rec, h, ns, vault.relay.drain)
    finally:
        scheduler.close()
        vault.close()
        bus.close()


def test_searches_show_up_as_accesses_and_scores(w: World) -> None:
    a = w.add("Ana moved to Lisbon in March")
    b = w.add("Bob plays the violin")
    for _ in range(3):
        assert a in w.search("Ana Lisbon")
    w.clock.now += timedelta(minutes=1)

    r = w.usage(a)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == a and body["namespace"] == w.ns and body["tracked"] is True
    assert body["access_count"] == 3 and body["distinct_principals"] == 1
    assert body["first_access"] == body["last_access"] == "2025-01-01T00:00:00Z"
    assert body["version"] == 1 and body["state"] == "active" and body["tier"] == "plaintext"
    scores = body["scores"]
    assert 2.99 < scores["decayed_frequency"] <= 3.0  # 3 accesses a minute ago, h = 1 day
    assert scores["hotness"] > scores["decayed_frequency"]  # plus the recency bonus
    assert scores["stability"] == 0.0  # no sessions
    assert scores["vitality"] is None  # no decay rule
    assert body["as_of"] == "2025-01-01T00:01:00Z"  # the injected clock
    assert body["decisions"] == [] and body["caches"] == [] and body["adapters"] == []

    if b not in w.search("Ana Lisbon"):  # b only counts when the search returned it
        assert w.usage(b).json()["access_count"] == 0


def test_decisions_appear_after_a_tick_with_reasons(w: World) -> None:
    a = w.add("Ana moved to Lisbon in March")
    b = w.add("Ana lives in Lisbon since March")
    for _ in range(3):
        assert {a, b} <= set(w.search("Ana Lisbon March"))
    w.settle()
    assert w.usage(a).json()["decisions"] == []  # nothing decided before a tick

    w.clock.now += timedelta(minutes=1)
    result = w.scheduler.tick()
    (activate,) = [d for d in result.decisions if d.kind == "activate"]
    body = w.usage(a).json()
    (decision,) = body["decisions"]
    assert decision["kind"] == "activate" and decision["cube_count"] == 2
    assert decision["command_id"] == activate.command_id
    assert decision["at"] == "2025-01-01T00:01:00Z" and decision["namespace"] == w.ns
    assert "hot set of 2 cubes" in decision["reason"]
    assert decision["numbers"]["tokens"] == 7 + 8  # the vault's estimates: ⌈28/4⌉ + ⌈31/4⌉
    assert body["caches"] == []  # pending until inference confirms

    promoted = MemoryPromoted(
        cube_ids=[a, b],
        from_tier=Tier.plaintext,
        to_tier=Tier.activation,
        target_id="kv_1",
        reason="built",
        command_id=activate.command_id,
    )
    tenant = w.client.get(f"/v1/memories/{a}", headers=w.h).json()["tenant"]
    event = make_event(promoted, source="/test/inference", tenant=tenant, namespace=w.ns)
    w.bus.publish(MemoryPromoted.topic, event, key=w.ns)
    assert w.usage(a).json()["caches"] == ["kv_1"]
    assert w.usage(b).json()["caches"] == ["kv_1"]


def test_ttl_expiry_is_a_decision_on_the_expired_memory(w: World) -> None:
    short = w.add("the door code is 4711", ttl_seconds=60)
    w.clock.now += timedelta(seconds=61)
    w.settle()
    w.scheduler.tick()
    body = w.usage(short).json()
    assert body["state"] == "expired" and body["expires_at"] == "2025-01-01T00:01:00Z"
    assert [d["kind"] for d in body["decisions"]] == ["expire_ttl"]
    assert body["decisions"][0]["reason"].startswith("TTL reached")


def test_an_unused_memory_has_zero_counters_and_no_decisions(w: World) -> None:
    cube = w.add("nobody ever asks about this")
    body = w.usage(cube).json()
    assert body["tracked"] is True  # memory.created reached the scheduler
    assert body["access_count"] == 0 and body["first_access"] is None
    assert body["scores"]["hotness"] == 0.0 and body["decisions"] == []


def test_a_memory_the_scheduler_never_saw_reads_as_untracked_zeros(w: World) -> None:
    w.scheduler.close()  # it stops listening: the new memory never reaches it
    cube = w.add("written while the scheduler is away")
    r = w.usage(cube)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == cube and body["tracked"] is False and body["access_count"] == 0
    assert body["version"] == 1 and body["state"] == "active"
    assert body["created_at"] == "2025-01-01T00:00:00Z"
    assert body["scores"] == {
        "decayed_frequency": 0.0,
        "hotness": 0.0,
        "stability": 0.0,
        "vitality": None,
    }
    assert body["decisions"] == [] and body["as_of"] is None


def test_another_tenants_memory_and_unknown_ids_are_404(w: World) -> None:
    cube = w.add("secret plan")
    w.search("secret plan")
    other, _ = new_tenant(w.client, "evil")
    for target, h in ((cube, other), ("no-such-memory", w.h)):
        r = w.usage(target, h)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "memory_not_found"
    assert w.client.get(f"/v1/memories/{cube}/usage").status_code == 401


def test_deleted_memory_is_404_like_the_memory_itself(w: World) -> None:
    cube = w.add("forget me")
    assert w.client.delete(f"/v1/memories/{cube}", headers=w.h).status_code == 204
    assert w.usage(cube).json()["code"] == "memory_not_found"


def test_memory_created_carries_the_token_estimate(w: World) -> None:
    w.add("four")
    w.add("Ünïcödé text 東京")  # 9 ASCII + 4 x 2 + 2 x 3 = 23 UTF-8 bytes -> 6
    w.settle()
    created = [e.data for e in w.rec.events]
    assert [c["token_estimate"] for c in created] == [1, 6]
    assert [c["decay_half_life_seconds"] for c in created] == [None, None]


def test_the_embedded_build_wires_the_scheduler(tmp_path: Path) -> None:
    clock = Clock()
    app, close = build_embedded(settings_for(tmp_path), clock=clock)
    try:
        with TestClient(app) as client:
            h, ns = new_tenant(client, "acme")
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": "hello"}, headers=h)
            cube = r.json()["memories"][0]["id"]
            client.post("/v1/search", json={"query": "hello", "namespaces": [ns]}, headers=h)
            app.state.vault.relay.drain()
            # The in-process bus delivers on its own threads: wait for the access.
            for _ in range(200):
                body = client.get(f"/v1/memories/{cube}/usage", headers=h).json()
                if body["access_count"] == 1:
                    break
                time.sleep(0.01)
            assert body["tracked"] is True and body["access_count"] == 1
            assert body["as_of"] == "2025-01-01T00:00:00Z"
    finally:
        close()


# --- distributed mode: the HTTP client of the scheduler's web server ---------------


def http_app(tmp_path: Path, scheduler: SchedulerAPI) -> tuple[TestClient, Any]:
    settings = settings_for(tmp_path)
    vault = build_vault(settings)
    vault.start()
    return TestClient(create_app(settings, vault, scheduler)), vault


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def test_scheduler_down_is_a_503_problem(tmp_path: Path) -> None:
    cfg = SchedulerSettings(url=f"http://127.0.0.1:{closed_port()}", timeout_s=2)
    scheduler = HttpScheduler(cfg)
    client, vault = http_app(tmp_path, scheduler)
    try:
        with client:
            h, ns = new_tenant(client, "acme")
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": "hello"}, headers=h)
            cube = r.json()["memories"][0]["id"]
            r = client.get(f"/v1/memories/{cube}/usage", headers=h)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "scheduler_unavailable"
            # The tenant check still comes first: a foreign id is 404, not 503.
            other, _ = new_tenant(client, "evil")
            r = client.get(f"/v1/memories/{cube}/usage", headers=other)
            assert r.status_code == 404 and r.json()["code"] == "memory_not_found"
    finally:
        scheduler.close()
        vault.close()


def faust_usage(seen: list[httpx.Request], views: dict[str, dict[str, Any]]) -> httpx.Client:
    """A stand-in for the faust app's /usage/{cube_id} (services/scheduler/stream.py)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if not path.startswith("/usage/"):
            return httpx.Response(404, text="Not Found")
        view = views.get(path.removeprefix("/usage/"))
        tenant = request.url.params.get("tenant")
        if view is None or (tenant is not None and view["tenant"] != tenant):
            problem = {"status": 404, "code": "usage_not_found", "detail": "no usage"}
            return httpx.Response(404, json=problem)
        return httpx.Response(200, json=view)

    return httpx.Client(base_url="http://scheduler", transport=httpx.MockTransport(handle))


def test_the_http_scheduler_view_is_served_and_unknown_cubes_read_as_zeros(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []
    views: dict[str, dict[str, Any]] = {}
    scheduler = HttpScheduler(SchedulerSettings(), client=faust_usage(seen, views))
    client, vault = http_app(tmp_path, scheduler)
    try:
        with client:
            h, ns = new_tenant(client, "acme")
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": "hello"}, headers=h)
            cube = r.json()["memories"][0]
            body = client.get(f"/v1/memories/{cube['id']}/usage", headers=h).json()
            assert body["tracked"] is False and body["access_count"] == 0
            assert seen[-1].url.params["tenant"] == cube["tenant"]

            # The faust view: counters only (no scores or decisions there yet),
            # plus a field this interface does not know.
            views[cube["id"]] = {
                "cube_id": cube["id"],
                "tenant": cube["tenant"],
                "namespace": ns,
                "access_count": 5,
                "first_access": "2025-01-01T00:00:00+00:00",
                "last_access": "2025-01-02T00:00:00+00:00",
                "distinct_principals": 2,
                "distinct_sessions": 1,
                "version": 1,
                "state": "active",
                "something_new": 1,
            }
            r = client.get(f"/v1/memories/{cube['id']}/usage", headers=h)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["tracked"] is True and body["access_count"] == 5
            assert body["scores"] is None and body["decisions"] == []
            assert "something_new" not in body and "tenant" not in body

            views[cube["id"]] = {
                "cube_id": cube["id"],
                "tenant": cube["tenant"],
                "access_count": "x",
            }
            r = client.get(f"/v1/memories/{cube['id']}/usage", headers=h)
            assert r.status_code == 503 and r.json()["code"] == "scheduler_unavailable"
    finally:
        scheduler.close()
        vault.close()


def test_a_url_that_is_not_a_scheduler_is_unavailable_not_unused() -> None:
    seen: list[httpx.Request] = []
    client = faust_usage(seen, {})
    scheduler = HttpScheduler(SchedulerSettings(), client=client)
    assert scheduler.explain("t", "c1") is None
    client.base_url = httpx.URL("http://scheduler/elsewhere")  # /elsewhere/usage/c1: 404 text
    with pytest.raises(Unavailable) as info:
        scheduler.explain("t", "c1")
    assert info.value.code == "scheduler_unavailable" and info.value.status == 503
    assert seen[0].url.path == "/usage/c1" and seen[0].url.params["tenant"] == "t"


def test_scheduler_url_setting() -> None:
    assert SchedulerSettings(web_port=7000).web_url() == "http://127.0.0.1:7000"
    assert SchedulerSettings(url="http://sched:6066").web_url() == "http://sched:6066"
    with pytest.raises(ValueError, match="http"):
        SchedulerSettings(url="sched:6066")


def test_the_scheduler_merges_near_duplicates_into_one_searchable_memory(w: World) -> None:
    """The merge policy end to end: memory.created → near-duplicate check at the
    tick → vault merge; search then returns one cube whose lineage names both."""
    a = w.add("Ana moved to Lisbon in March")
    w.clock.now += timedelta(minutes=1)
    b = w.add("Ana moved to Lisbon in March!")  # same words: cosine 1 with hashing
    other = w.add("Bob plays the violin every morning")
    w.settle()
    result = w.scheduler.tick()
    (merge,) = [d for d in result.decisions if d.kind == "merge"]
    assert sorted(merge.cube_ids) == sorted([a, b]) and "near-duplicates" in merge.reason
    merged = merge.target_id
    found = w.search("Ana Lisbon March")
    assert merged in found and a not in found and b not in found
    assert other not in found or found.index(merged) < found.index(other)
    lineage = w.client.get(f"/v1/memories/{merged}/lineage", headers=w.h).json()
    into = {(e["src"], e["dst"]) for e in lineage["edges"] if e["kind"] == "MERGED_INTO"}
    assert into == {(f"{a}@1", f"{merged}@1"), (f"{b}@1", f"{merged}@1")}
    for original in (a, b):
        cube = w.client.get(f"/v1/memories/{original}", headers=w.h).json()
        assert cube["lifecycle"]["state"] == "merged"
        assert cube["lifecycle"]["reason"] == merge.reason
    assert [d["kind"] for d in w.usage(a).json()["decisions"]] == ["merge"]
    w.settle()
    assert [d.kind for d in w.scheduler.tick().decisions if d.kind == "merge"] == []  # once
