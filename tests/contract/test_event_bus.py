"""EventBus contract: every adapter (in-process today, Kafka later) passes this suite.

See shared/ports/bus.py for the delivery contract. Handlers here record what they
see; assertions read those records after ``flush``. Topic and group names are
random per test, so a shared broker needs no cleanup.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.adapters import create_event_bus
from shared.errors import Unavailable
from shared.ports.bus import EventBus
from shared.schemas.events import EventEnvelope, MemoryAccessed, make_event
from shared.settings import BusSettings
from tests.contract.adapters import AdapterCase, new_id, params

pytestmark = pytest.mark.contract

ATTEMPTS = 3


# Each case gives the bus URL; the fixture adds a fresh dead-letter topic.
EVENT_BUSES: list[AdapterCase[str]] = [
    AdapterCase("memory", lambda tmp: "memory://"),
    AdapterCase("kafka", lambda tmp: "kafka://127.0.0.1:9092", requires=("127.0.0.1", 9092)),
]


class Bus:
    """The bus under test plus the dead-letter topic its settings name."""

    def __init__(self, bus: EventBus, dead_letter_topic: str) -> None:
        self.bus = bus
        self.dead_letter_topic = dead_letter_topic


@pytest.fixture(params=params(EVENT_BUSES))
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bus]:
    case: AdapterCase[str] = request.param
    settings = BusSettings(
        url=case.build(tmp_path), dead_letter_topic=new_id("dead"), max_delivery_attempts=ATTEMPTS
    )
    bus = create_event_bus(settings)
    try:
        yield Bus(bus, settings.dead_letter_topic)
    finally:
        bus.close()


@pytest.fixture
def topic() -> str:
    return new_id("topic")


def event(cube_id: str, n: int) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube_id, version=1, channel="search", query_id=str(n), rank=1, score=0.5
    )
    return make_event(data, source="tests", tenant="t1", namespace="ns1")


def content(e: EventEnvelope) -> dict[str, object]:
    """The envelope without ``traceparent``: with tracing on, publishing stamps the
    producer span's context there (same trace, new parent span), by design."""
    return e.model_dump(exclude={"traceparent"})


def n_of(e: EventEnvelope) -> int:
    return int(e.data["query_id"])


class Recorder:
    def __init__(self, fail: Callable[[EventEnvelope, int], bool] | None = None) -> None:
        self.seen: list[EventEnvelope] = []
        self.attempts: dict[str, int] = defaultdict(int)
        self._fail = fail
        self._lock = threading.Lock()

    def __call__(self, e: EventEnvelope) -> None:
        with self._lock:
            self.attempts[e.id] += 1
            attempt = self.attempts[e.id]
        if self._fail is not None and self._fail(e, attempt):
            raise RuntimeError(f"handler failed on {n_of(e)} (attempt {attempt})")
        with self._lock:
            self.seen.append(e)

    def ns(self) -> list[int]:
        return [n_of(e) for e in self.seen]


def test_a_group_sees_every_event_once_in_order(b: Bus, topic: str) -> None:
    published = [event("c1", i) for i in range(20)]
    for e in published[:10]:
        b.bus.publish(topic, e)
    rec = Recorder()
    sub = b.bus.subscribe(new_id("g"), [topic], rec)
    for e in published[10:]:
        b.bus.publish(topic, e)
    b.bus.flush()
    assert rec.ns() == list(range(20))  # events published before subscribing too
    assert [content(e) for e in rec.seen] == [content(e) for e in published]  # intact
    sub.close()


def test_two_groups_each_see_every_event(b: Bus, topic: str) -> None:
    r1, r2 = Recorder(), Recorder()
    s1 = b.bus.subscribe(new_id("audit"), [topic], r1)
    s2 = b.bus.subscribe(new_id("scheduler"), [topic], r2)
    for i in range(30):
        b.bus.publish(topic, event(f"c{i % 3}", i))
    b.bus.flush()
    assert sorted(r1.ns()) == list(range(30))
    assert sorted(r2.ns()) == list(range(30))
    s1.close()
    s2.close()


def test_order_is_kept_per_key(b: Bus, topic: str) -> None:
    rec = Recorder()
    sub = b.bus.subscribe(new_id("g"), [topic], rec)

    def produce(key: str) -> None:
        for i in range(50):
            b.bus.publish(topic, event(key, i), key=key)

    threads = [threading.Thread(target=produce, args=(f"cube-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.bus.flush()
    per_key: dict[str, list[int]] = defaultdict(list)
    for e in rec.seen:
        per_key[e.data["cube_id"]].append(n_of(e))
    assert len(per_key) == 4
    for seq in per_key.values():
        assert seq == list(range(50))
    sub.close()


def test_a_failing_handler_is_retried(b: Bus, topic: str) -> None:
    rec = Recorder(fail=lambda e, attempt: n_of(e) == 1 and attempt < ATTEMPTS)
    dead = Recorder()
    sub = b.bus.subscribe(new_id("g"), [topic], rec)
    dsub = b.bus.subscribe(new_id("dlq"), [b.dead_letter_topic], dead)
    for i in range(3):
        b.bus.publish(topic, event("c1", i))
    b.bus.flush()
    assert rec.ns() == [0, 1, 2]  # at least once, and the retry kept the order
    assert max(rec.attempts.values()) == ATTEMPTS
    assert dead.seen == []
    sub.close()
    dsub.close()


def test_poison_event_goes_to_dead_letter_and_group_moves_on(b: Bus, topic: str) -> None:
    group = new_id("g")
    poison = event("c1", 1)
    rec = Recorder(fail=lambda e, attempt: e.id == poison.id)
    dead = Recorder()
    sub = b.bus.subscribe(group, [topic], rec)
    dsub = b.bus.subscribe(new_id("dlq"), [b.dead_letter_topic], dead)
    b.bus.publish(topic, event("c1", 0))
    b.bus.publish(topic, poison)
    b.bus.publish(topic, event("c1", 2))
    b.bus.flush()
    assert rec.ns() == [0, 2]
    assert rec.attempts[poison.id] == ATTEMPTS
    assert len(dead.seen) == 1
    letter = dead.seen[0].data
    assert letter["topic"] == topic
    assert letter["group"] == group
    assert "handler failed on 1" in letter["error"]
    assert content(EventEnvelope.model_validate(letter["event"])) == content(poison)
    assert dead.seen[0].tenant == poison.tenant
    sub.close()
    dsub.close()


def test_flush_waits_for_slow_handlers(b: Bus, topic: str) -> None:
    def slow(e: EventEnvelope) -> None:
        time.sleep(0.02)
        done.append(n_of(e))

    done: list[int] = []
    sub = b.bus.subscribe(new_id("g"), [topic], slow)
    for i in range(10):
        b.bus.publish(topic, event("c1", i))
    b.bus.flush(timeout_s=10)
    assert done == list(range(10))
    sub.close()


def test_a_group_resumes_after_its_last_handled_event(b: Bus, topic: str) -> None:
    group = new_id("g")
    first = Recorder()
    sub = b.bus.subscribe(group, [topic], first)
    for i in range(3):
        b.bus.publish(topic, event("c1", i))
    b.bus.flush()
    sub.close()
    for i in range(3, 5):
        b.bus.publish(topic, event("c1", i))
    second = Recorder()
    sub2 = b.bus.subscribe(group, [topic], second)
    b.bus.flush()
    assert first.ns() == [0, 1, 2]
    assert second.ns() == [3, 4]
    sub2.close()


def test_one_subscription_over_several_topics(b: Bus) -> None:
    t1, t2 = new_id("topic"), new_id("topic")
    rec = Recorder()
    sub = b.bus.subscribe(new_id("g"), [t1, t2], rec)
    for i in range(10):
        b.bus.publish(t1 if i % 2 else t2, event("c1", i))
    b.bus.flush()
    assert sorted(rec.ns()) == list(range(10))
    sub.close()


def test_closed_subscription_stops_and_closed_bus_refuses(b: Bus, topic: str) -> None:
    rec = Recorder()
    sub = b.bus.subscribe(new_id("g"), [topic], rec)
    b.bus.publish(topic, event("c1", 0))
    b.bus.flush()
    sub.close()
    b.bus.publish(topic, event("c1", 1))
    b.bus.flush()
    assert rec.ns() == [0]
    b.bus.close()
    with pytest.raises(Unavailable):
        b.bus.publish(topic, event("c1", 2))
