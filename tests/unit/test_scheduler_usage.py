"""The scheduler's usage processor: counting, idempotence, poison events, embedded bus."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scheduler.inproc import start_embedded
from services.scheduler.usage import CubeUsage, Delivery, Position, UsageProcessor
from shared.adapters.bus_memory import MemoryEventBus
from shared.schemas.events import (
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryPromoted,
    MemoryUpdated,
    make_event,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def accessed(
    cube: str = "c1",
    *,
    tenant: str = "t1",
    principal: str | None = "p1",
    session: str | None = None,
    at: datetime = T0,
) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube,
        version=1,
        channel="search",
        query_id="q",
        rank=1,
        score=0.5,
        principal=principal,
        session_id=session,
    )
    return make_event(data, source="/test", tenant=tenant, namespace="ns1", time=at)


def created(cube: str = "c1", version: int = 1, at: datetime = T0) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube, version=version, tier="plaintext", origin="user_input", semantic_type="fact"
    )
    return make_event(data, source="/test", tenant="t1", namespace="ns1", time=at)


def updated(cube: str = "c1", version: int = 2, at: datetime = T0) -> EventEnvelope:
    data = MemoryUpdated(cube_id=cube, version=version, previous_version=version - 1, changed=[])
    return make_event(data, source="/test", tenant="t1", namespace="ns1", time=at)


def run(proc: UsageProcessor, *events: EventEnvelope) -> Any:
    return proc.process([Delivery(e) for e in events])


def test_accesses_are_counted_with_times_and_distinct_principals() -> None:
    state: dict[str, Any] = {}
    proc = UsageProcessor(state)
    later = T0 + timedelta(hours=1)
    result = run(
        proc,
        accessed(principal="p1", session="s1", at=later),
        accessed(principal="p2", session="s1", at=T0),
        accessed(principal="p1", session="s2", at=later),
    )
    assert (result.applied, result.duplicates, result.touched) == (3, 0, ["c1"])
    usage = proc.usage("c1")
    assert usage is not None
    view = usage.view()
    assert view["access_count"] == 3
    assert view["distinct_principals"] == 2 and view["distinct_sessions"] == 2
    # event times, not processing time: out-of-order arrival still gives first/last
    assert view["first_access"] == T0.isoformat() and view["last_access"] == later.isoformat()
    assert view["tenant"] == "t1" and view["namespace"] == "ns1"
    assert "seen" not in view and "offsets" not in view


def test_same_event_id_twice_counts_once() -> None:
    proc = UsageProcessor({})
    event = accessed()
    first, again = run(proc, event, event), run(proc, event)
    assert (first.applied, first.duplicates) == (1, 1)
    assert (again.applied, again.duplicates) == (0, 1)
    assert proc.usage("c1").access_count == 1  # type: ignore[union-attr]


def test_replay_from_an_older_offset_is_ignored_even_beyond_the_id_ring() -> None:
    proc = UsageProcessor({}, recent_event_ids=2)
    events = [accessed() for _ in range(10)]
    pos = [Position("memory.accessed", 3, 100 + i) for i in range(10)]
    proc.process([Delivery(e, p) for e, p in zip(events, pos, strict=True)])
    # A restart redelivers from offset 104: ids 4..9 are no longer in the ring of 2,
    # but the offset watermark stored with the record catches them.
    replay = proc.process([Delivery(e, p) for e, p in zip(events[4:], pos[4:], strict=True)])
    assert (replay.applied, replay.duplicates) == (0, 6)
    assert proc.usage("c1").access_count == 10  # type: ignore[union-attr]
    # Another partition (say, after the topic grew) has its own watermark.
    other = proc.process([Delivery(accessed(), Position("memory.accessed", 4, 0))])
    assert other.applied == 1


def test_lifecycle_events_are_idempotent_and_order_insensitive() -> None:
    later = T0 + timedelta(days=1)
    events = [created(at=T0), updated(version=2, at=later), updated(version=3, at=later)]
    forward, backward = UsageProcessor({}), UsageProcessor({})
    run(forward, *events)
    run(backward, *reversed(events), *events)  # reversed, then everything again
    assert forward.usage("c1") == backward.usage("c1")
    usage = forward.usage("c1")
    assert usage is not None
    assert (usage.version, usage.state, usage.access_count) == (3, "active", 0)
    assert usage.created_at == T0.timestamp() and usage.updated_at == later.timestamp()
    again = run(forward, *events)
    assert (again.applied, again.duplicates) == (0, 3)

    deleted = make_event(
        MemoryDeleted(cube_id="c1", version=4), source="/t", tenant="t1", namespace="ns1"
    )
    run(forward, deleted)
    assert forward.usage("c1").state == "deleted"  # type: ignore[union-attr]


def test_members_are_capped() -> None:
    proc = UsageProcessor({}, max_tracked_members=3)
    run(proc, *(accessed(principal=f"p{i}") for i in range(10)))
    usage = proc.usage("c1")
    assert usage is not None and usage.access_count == 10
    assert usage.view(capped_at=3)["distinct_principals"] == 3
    assert usage.view(capped_at=3)["members_capped"] is True


def test_poison_events_are_rejected_and_the_rest_of_the_batch_applies() -> None:
    proc = UsageProcessor({})
    bad_payload = EventEnvelope(
        source="/t", type="io.memgrid.memory.accessed", tenant="t1", data={"cube_id": "c1"}
    )
    other_tenant = accessed(tenant="t2")
    untracked = make_event(
        MemoryPromoted(
            cube_ids=["c1"], from_tier="plaintext", to_tier="activation", target_id="k", reason="x"
        ),
        source="/t",
        tenant="t1",
        namespace="ns1",
    )
    result = run(proc, accessed(), bad_payload, other_tenant, untracked, accessed())
    assert result.applied == 2 and result.ignored == 1
    assert [i for i, _ in result.rejected] == [1, 2]
    assert "another tenant" in str(result.rejected[1][1])
    assert proc.usage("c1").tenant == "t1"  # type: ignore[union-attr]


def test_one_write_per_touched_cube_per_batch() -> None:
    writes: list[str] = []

    class Recording(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    proc = UsageProcessor(Recording())
    run(proc, *(accessed("a") for _ in range(50)), *(accessed("b") for _ in range(5)))
    assert writes == ["a", "b"]


def test_records_survive_a_json_round_trip_and_ignore_unknown_fields() -> None:
    proc = UsageProcessor({})
    run(proc, accessed(session="s"))
    import json

    stored = json.loads(json.dumps(proc.state["c1"]))
    stored["future_field"] = 1
    assert CubeUsage.from_dict(stored) == proc.usage("c1")


def test_embedded_consumer_counts_from_the_in_process_bus() -> None:
    bus = MemoryEventBus()
    letters: list[EventEnvelope] = []
    bus.subscribe("test-dlq", [bus.dead_letter_topic], letters.append)
    consumer = start_embedded(bus)
    try:
        event = accessed()
        bus.publish("memory.accessed", event, key="c1")
        bus.publish("memory.accessed", event, key="c1")  # published twice
        bus.publish("memory.created", created(), key="c1")
        bus.publish("memory.accessed", accessed(tenant="t2"), key="c1")  # poison
        bus.flush(timeout_s=10)
        usage = consumer.processor.usage("c1")
        assert usage is not None and usage.access_count == 1 and usage.version == 1
        assert consumer.stats.duplicates == 1
        assert [d.data["group"] for d in letters] == ["memgrid-scheduler"]
    finally:
        consumer.close()
        bus.close()


def test_embedded_path_does_not_import_faust() -> None:
    code = (
        "import sys, services.scheduler.usage, services.scheduler.inproc, "
        "services.scheduler.main, services.governance.audit, services.governance.main, "
        "shared.faust_worker; print('faust' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
