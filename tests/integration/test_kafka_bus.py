"""What is particular to KafkaEventBus on the real broker (the contract: tests/contract).

The wire format outside subscribers rely on, dead-lettering of records that are
not envelopes, and the declared topics created with their specs.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.schemas.events import EventEnvelope, MemoryAccessed, make_event
from shared.settings import BusSettings
from shared.topics import MEMORY_ACCESSED, topic_specs
from tests.contract.adapters import reachable

pytestmark = pytest.mark.integration

BOOTSTRAP = "127.0.0.1:9092"


@pytest.fixture
def settings() -> BusSettings:
    if not reachable("127.0.0.1", 9092):
        pytest.skip("nothing listens on 127.0.0.1:9092 (make infra-up)")
    return BusSettings(
        url=f"kafka://{BOOTSTRAP}",
        dead_letter_topic=f"test-dead-{uuid.uuid4().hex[:8]}",
        max_delivery_attempts=2,
        retry_backoff_s=0.01,
    )


@pytest.fixture
def admin(settings: BusSettings) -> Iterator[Any]:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    yield client
    client.close()


def accessed(cube_id: str, query_id: str = "q", **kw: Any) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube_id, version=1, channel="search", query_id=query_id, rank=1, score=1
    )
    return make_event(data, source="tests", tenant="t1", namespace="ns1", **kw)


def read_all(topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` read without a group, waiting for ``expected`` of them."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def test_declared_topics_are_created_with_their_specs(settings: BusSettings, admin: Any) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    from shared.adapters.bus_kafka import KafkaEventBus

    KafkaEventBus(settings).close()
    names = {t["name"]: t for t in admin.describe_topics([s.name for s in topic_specs(settings)])}
    for spec in topic_specs(settings):
        assert names[spec.name]["error_code"] == 0, spec.name
        assert len(names[spec.name]["partitions"]) == spec.partitions, spec.name
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, MEMORY_ACCESSED.name)]
    )
    accessed = configs["topic"][MEMORY_ACCESSED.name]
    assert accessed["retention.ms"]["value"] == str(MEMORY_ACCESSED.retention_ms)
    assert accessed["cleanup.policy"]["value"] == "delete"
    KafkaEventBus(settings).close()  # a second start changes nothing


def test_wire_format_is_a_structured_cloudevent(settings: BusSettings) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    topic = f"test-wire-{uuid.uuid4().hex[:8]}"
    event = accessed(
        "cube-1", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    bus = KafkaEventBus(settings)
    try:
        bus.publish(topic, event)
    finally:
        bus.close()
    (record,) = read_all(topic, 1)
    assert record.key == b"cube-1"  # the cube id: one cube's events stay in one partition
    wired = EventEnvelope.model_validate_json(record.value)
    assert wired.model_dump(exclude={"traceparent"}) == event.model_dump(exclude={"traceparent"})
    headers = dict(record.headers)
    assert headers["ce_type"] == b"io.memgrid.memory.accessed"
    assert headers["ce_id"] == event.id.encode()
    # The producer span continues the event's trace: same trace id, its own span.
    assert wired.traceparent is not None
    assert headers["traceparent"] == wired.traceparent.encode()
    assert wired.traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert headers["content-type"] == b"application/cloudevents+json"


def test_a_record_that_is_not_an_envelope_is_dead_lettered_at_once(
    settings: BusSettings,
) -> None:
    from kafka import KafkaProducer

    from shared.adapters.bus_kafka import KafkaEventBus

    topic = f"test-junk-{uuid.uuid4().hex[:8]}"
    bus = KafkaEventBus(settings)
    seen: list[EventEnvelope] = []
    calls = 0

    def handler(e: EventEnvelope) -> None:
        nonlocal calls
        calls += 1
        seen.append(e)

    try:
        group = f"g-{uuid.uuid4().hex[:8]}"
        sub = bus.subscribe(group, [topic], handler)
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
        producer.send(topic, key=b"k", value=b"\xffnot json").get(10)
        producer.send(topic, key=b"k", value=b'{"type": "x"}').get(10)
        producer.close()
        good = accessed("k")
        bus.publish(topic, good, key="k")
        bus.flush(timeout_s=30)
        assert [e.id for e in seen] == [good.id]  # the group moved past both bad records
        assert calls == 1  # bad records never reached the handler
        sub.close()
    finally:
        bus.close()
    letters = [
        EventEnvelope.model_validate_json(r.value) for r in read_all(settings.dead_letter_topic, 2)
    ]
    assert len(letters) == 2
    first = letters[0].data
    assert first["topic"] == topic and first["group"] == group
    assert first["attempts"] == 0 and first["offset"] == 0 and first["partition"] >= 0
    assert base64.b64decode(first["raw"]) == b"\xffnot json"
    assert "ValidationError" in first["error"]
    assert letters[0].tenant == "unknown"


def test_key_defaults_to_the_subject_and_can_be_given(settings: BusSettings) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    topic = f"test-keys-{uuid.uuid4().hex[:8]}"
    event = accessed("c9")
    bus = KafkaEventBus(settings)
    try:
        bus.publish(topic, event)
        bus.publish(topic, event, key="ns1")
    finally:
        bus.close()
    assert sorted(r.key for r in read_all(topic, 2)) == [b"c9", b"ns1"]
