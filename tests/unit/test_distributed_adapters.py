"""Kafka/S3 adapters and topic declarations without servers (with servers:
tests/contract and tests/integration)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shared.errors import ConfigError, Unavailable
from shared.schemas.events import EVENT_TYPES, EventEnvelope
from shared.settings import BlobSettings, BusSettings
from shared.topics import (
    COMMAND_TOPICS,
    DEAD_LETTER_TYPE,
    FACT_TOPICS,
    TopicSpec,
    export,
    json_schemas,
    make_dead_letter,
    spec_for,
    topic_specs,
)

pytestmark = pytest.mark.unit


def test_every_event_type_has_exactly_one_declared_topic() -> None:
    names = [s.name for s in topic_specs()]
    assert len(names) == len(set(names))
    assert {s.name for s in FACT_TOPICS} == set(EVENT_TYPES)
    assert {s.name for s in COMMAND_TOPICS} == {
        "commands.activation.build",
        "commands.activation.evict",
        "commands.adapter.train",
        "commands.adapter.retire",
        "commands.memory.expire",
    }
    assert names[-1] == "memgrid.deadletter"
    assert spec_for("dlq-x", BusSettings(dead_letter_topic="dlq-x")) is not None
    assert spec_for("no.such.topic") is None
    for spec in topic_specs():
        assert spec.partitions >= 1 and spec.key_description


def test_topic_configs() -> None:
    assert TopicSpec("a", 1, 1000, False, "k").configs() == {
        "cleanup.policy": "delete",
        "retention.ms": "1000",
    }
    assert TopicSpec("a", 1, -1, True, "k").configs()["cleanup.policy"] == "compact"
    assert TopicSpec("a", 1, 5, True, "k").configs()["cleanup.policy"] == "compact,delete"


def test_export_writes_a_schema_per_event_and_a_catalogue(tmp_path: Path) -> None:
    written = {p.name for p in export(tmp_path)}
    assert {"envelope.json", "deadletter.json", "topics.json"} <= written
    assert {f"{name}.json" for name in EVENT_TYPES} <= written
    envelope = json.loads((tmp_path / "envelope.json").read_text())
    assert {"id", "type", "tenant", "data"} <= set(envelope["required"])
    catalogue = json.loads((tmp_path / "topics.json").read_text())["topics"]
    accessed = next(t for t in catalogue if t["name"] == "memory.accessed")
    assert accessed["schema"] == "memory.accessed.json"
    assert accessed["event_type"] == "io.memgrid.memory.accessed"


def test_exported_schemas_are_up_to_date() -> None:
    """docs/events/ is what outside subscribers read: regenerate it with
    ``python -m shared.topics export docs/events/`` when an event model changes."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "events"
    for name, schema in json_schemas().items():
        assert json.loads((docs / name).read_text()) == schema, f"docs/events/{name} is stale"


def test_dead_letter_of_an_unreadable_message_keeps_its_bytes() -> None:
    letter = make_dead_letter(
        topic="t", group="g", key="k", error=ValueError("bad"), attempts=0, raw=b"\xff"
    )
    assert letter.type == DEAD_LETTER_TYPE and letter.tenant == "unknown"
    assert letter.data == {
        "topic": "t",
        "group": "g",
        "key": "k",
        "error": "ValueError: bad",
        "attempts": 0,
        "raw": "/w==",
    }
    EventEnvelope.model_validate_json(letter.model_dump_json())  # a valid envelope


def test_kafka_urls() -> None:
    pytest.importorskip("kafka")
    from shared.adapters.bus_kafka import bootstrap_servers

    assert bootstrap_servers("kafka://h1:9092,h2:9093") == ["h1:9092", "h2:9093"]
    assert bootstrap_servers("kafka://broker") == ["broker:9092"]
    for bad in ("memory://", "kafka://h:notaport", "kafka://:9092", "kafka://h:0"):
        with pytest.raises(ConfigError):
            bootstrap_servers(bad)


def test_s3_urls() -> None:
    pytest.importorskip("minio")
    from shared.adapters.blob_s3 import s3_bucket

    assert s3_bucket("s3://memgrid") == "memgrid"
    assert s3_bucket("s3://memgrid/") == "memgrid"
    for bad in ("file:///x", "s3://", "s3://Upper", "s3://a", "s3://b/sub", "s3://a..b"):
        with pytest.raises(ConfigError):
            s3_bucket(bad)


def test_unreachable_kafka_is_unavailable_quickly() -> None:
    pytest.importorskip("kafka")
    from shared.adapters import create_event_bus

    start = time.monotonic()
    with pytest.raises(Unavailable):
        create_event_bus(BusSettings(url="kafka://127.0.0.1:1", publish_timeout_s=1))
    assert time.monotonic() - start < 10


def test_unreachable_s3_is_unavailable_quickly() -> None:
    pytest.importorskip("minio")
    from shared.adapters import create_blob_store

    start = time.monotonic()
    with pytest.raises(Unavailable):
        create_blob_store(BlobSettings(url="s3://memgrid", endpoint="127.0.0.1:1", timeout_s=1))
    assert time.monotonic() - start < 10


def test_replication_factor_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        BusSettings(replication_factor=0)
