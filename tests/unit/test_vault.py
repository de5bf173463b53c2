"""The vault service over the embedded adapters: versions, events, outbox, isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.vault.embedders import HashingEmbedder
from services.vault.service import Vault
from services.vault.stores import create_graph_store
from shared.adapters import create_event_bus
from shared.errors import NotFound, Unavailable
from shared.ports.bus import EventBus
from shared.schemas.api import Caller, CubeDraft, MemoryPatch, NamespaceCreate, SearchRequest
from shared.schemas.events import EventEnvelope
from shared.settings import Settings

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    def __init__(self, bus: EventBus, topics: list[str]) -> None:
        self.events: list[EventEnvelope] = []
        self._lock = threading.Lock()
        bus.subscribe("test-recorder", topics, self._on)

    def _on(self, ev: EventEnvelope) -> None:
        with self._lock:
            self.events.append(ev)

    def topics(self) -> list[str]:
        return [e.topic for e in self.events]


def make_vault(tmp: Path, bus: EventBus, clock: Clock) -> Vault:
    settings = Settings(data_dir=tmp, embedder={"backend": "hashing"})  # type: ignore[arg-type]
    emb = HashingEmbedder()
    store = create_graph_store(settings.graph, emb.dimension)
    return Vault(settings, store, bus, emb, clock=clock)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Vault, EventBus, Clock, Caller, str]]:
    bus = create_event_bus(Settings().bus)
    clock = Clock()
    vault = make_vault(tmp_path, bus, clock)
    vault.start()
    t = vault.create_tenant("acme")
    key = vault.find_api_key(t.api_key.split("_")[1])
    assert key is not None
    caller = Caller(tenant=t.id, principal=key.principal)
    ns = vault.create_namespace(caller, NamespaceCreate(name="team")).id
    yield vault, bus, clock, caller, ns
    vault.close()
    bus.close()


def search(vault: Vault, caller: Caller, ns: str, q: str) -> list[str]:
    res = vault.search(caller, SearchRequest(query=q, namespaces=[ns], top_k=10))
    return [h.text for h in res.results]


def test_create_update_delete_keeps_history_and_publishes_after_commit(env) -> None:  # type: ignore[no-untyped-def]
    vault, bus, _, caller, ns = env
    rec = Recorder(bus, ["memory.created", "memory.updated", "memory.deleted"])
    [cube] = vault.create_memories(caller, ns, [CubeDraft(text="Ana lives in Lisbon")])
    assert cube.version == 1
    new = vault.update_memory(caller, cube.id, MemoryPatch(text="Ana lives in Oslo"))
    assert new.version == 2 and new.id == cube.id
    assert search(vault, caller, ns, "Oslo") == ["Ana lives in Oslo"]
    assert "Ana lives in Lisbon" not in search(vault, caller, ns, "Lisbon")
    vault.delete_memory(caller, cube.id)
    with pytest.raises(NotFound):
        vault.get_memory(caller, cube.id)
    assert search(vault, caller, ns, "Ana Oslo") == []
    versions = vault.history(caller, cube.id)
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[-1].lifecycle.state == "deleted"
    lineage = vault.lineage(caller, cube.id)
    assert {(e.kind, e.src, e.dst) for e in lineage.edges} == {
        ("VERSION_OF", f"{cube.id}@2", f"{cube.id}@1"),
        ("VERSION_OF", f"{cube.id}@3", f"{cube.id}@2"),
    }
    vault.relay.drain()
    bus.flush()
    assert rec.topics() == ["memory.created", "memory.updated", "memory.deleted"]
    assert [e.parse().version for e in rec.events] == [1, 2, 3]  # type: ignore[attr-defined]


def test_other_tenant_sees_nothing(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, _, caller, ns = env
    [cube] = vault.create_memories(caller, ns, [CubeDraft(text="secret plan")])
    other_t = vault.create_tenant("evil")
    other = Caller(tenant=other_t.id, principal="x")
    for call in (
        lambda: vault.get_memory(other, cube.id),
        lambda: vault.history(other, cube.id),
        lambda: vault.lineage(other, cube.id),
        lambda: vault.update_memory(other, cube.id, MemoryPatch(text="x")),
        lambda: vault.delete_memory(other, cube.id),
        lambda: vault.search(other, SearchRequest(query="secret", namespaces=[ns])),
        lambda: vault.create_memories(other, ns, [CubeDraft(text="x")]),
    ):
        with pytest.raises(NotFound):
            call()
    assert vault.list_namespaces(other) == []
    assert search(vault, caller, ns, "secret plan") == ["secret plan"]


def test_ttl_removes_from_search_once_expired(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, clock, caller, ns = env
    vault.create_memories(caller, ns, [CubeDraft(text="door code is 4711", ttl_seconds=60)])
    assert search(vault, caller, ns, "door code") == ["door code is 4711"]
    clock.now += timedelta(seconds=61)
    assert search(vault, caller, ns, "door code") == []


def test_search_publishes_accessed_with_ranks(env) -> None:  # type: ignore[no-untyped-def]
    vault, bus, _, caller, ns = env
    rec = Recorder(bus, ["memory.accessed"])
    vault.create_memories(caller, ns, [CubeDraft(text=f"fact number {i}") for i in range(3)])
    res = vault.search(caller, SearchRequest(query="fact number", namespaces=[ns], top_k=2))
    bus.flush()
    assert len(res.results) == 2
    accessed = [e.parse() for e in rec.events]
    assert [a.rank for a in accessed] == [1, 2]  # type: ignore[attr-defined]
    assert [a.cube_id for a in accessed] == [h.id for h in res.results]  # type: ignore[attr-defined]
    assert len({a.query_id for a in accessed}) == 1  # type: ignore[attr-defined]


def test_inference_access_is_reported_not_searched(env) -> None:  # type: ignore[no-untyped-def]
    """Inference retrieves without publishing, then reports what it put in the prompt
    (channel inference); a foreign cube in the report publishes nothing (404)."""
    from shared.schemas.api import AccessItem, AccessReport

    vault, bus, _, caller, ns = env
    rec = Recorder(bus, ["memory.accessed"])
    vault.create_memories(caller, ns, [CubeDraft(text=f"fact number {i}") for i in range(3)])
    req = SearchRequest(query="fact number", namespaces=[ns], top_k=3)
    res = vault.search(caller, req, publish_access=False)
    bus.flush()
    assert len(res.results) == 3 and rec.events == []
    used = res.results[0]
    report = AccessReport(
        query_id="q1", items=[AccessItem(cube_id=used.id, version=used.version, rank=1)]
    )
    vault.record_access(caller, report)
    bus.flush()
    [ev] = [e.parse() for e in rec.events]
    assert (ev.cube_id, ev.channel, ev.query_id) == (used.id, "inference", "q1")  # type: ignore[attr-defined]
    other = vault.create_tenant("other")
    stranger = Caller(tenant=other.id, principal="p")
    with pytest.raises(NotFound):
        vault.record_access(stranger, report)
    bus.flush()
    assert len(rec.events) == 1


class DownBus:
    """A bus whose broker is unreachable: publish fails, as Kafka's would."""

    def publish(self, topic: str, event: EventEnvelope, key: str | None = None) -> None:
        raise Unavailable("broker down")

    def subscribe(self, *a: object, **k: object) -> None:
        raise AssertionError("not used")

    def flush(self, timeout_s: float = 10.0) -> None: ...
    def close(self) -> None: ...


def test_outbox_keeps_events_while_the_bus_is_down_and_sends_them_on_restart(
    tmp_path: Path,
) -> None:
    clock = Clock()
    down = make_vault(tmp_path, DownBus(), clock)  # type: ignore[arg-type]
    down.start()
    t = down.create_tenant("acme")
    caller = Caller(tenant=t.id, principal="p")
    ns = down.create_namespace(caller, NamespaceCreate(name="n")).id
    made = down.create_memories(caller, ns, [CubeDraft(text=f"m{i}") for i in range(5)])
    down.close()  # "crash": the events were committed but never published

    bus = create_event_bus(Settings().bus)
    rec = Recorder(bus, ["memory.created"])
    again = make_vault(tmp_path, bus, clock)
    again.start()
    again.relay.drain()
    bus.flush()
    assert sorted(e.subject or "" for e in rec.events) == sorted(c.id for c in made)
    assert again.relay.drain() == 0  # acknowledged: not sent a second time
    again.close()
    bus.close()
