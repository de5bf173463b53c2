"""Rolling upgrades: a consumer of this version reads what a newer producer of the
same major version writes (extra attributes and fields, a newer minor), and
refuses a newer major version with a clear error, which sends it to the
dead-letter topic at once (docs/events.md#versioning-and-rolling-upgrades)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from shared.schemas.events import EventEnvelope, MemoryCreated
from tests.unit.test_telemetry import created

pytestmark = pytest.mark.unit


def newer_producer(schemaversion: str) -> bytes:
    """memory.created as a newer producer writes it: a new envelope extension
    attribute and a new data field, both unknown here."""
    wire = json.loads(created("c9").model_dump_json())
    wire["schemaversion"] = schemaversion
    wire["region"] = "eu-west-1"  # a new CloudEvents extension attribute
    wire["data"]["embedding_model"] = "minilm-v3"  # a new optional field
    return json.dumps(wire).encode()


def test_a_newer_minor_version_with_new_fields_is_read() -> None:
    envelope = EventEnvelope.model_validate_json(newer_producer("1.3"))
    assert envelope.schemaversion == "1.3"
    assert envelope.subject == "c9"
    data = envelope.parse()
    assert isinstance(data, MemoryCreated)
    assert data.cube_id == "c9" and data.version == 1


def test_an_unknown_major_version_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="reads major version 1 only"):
        EventEnvelope.model_validate_json(newer_producer("2"))
    with pytest.raises(ValidationError, match=r"not MAJOR or MAJOR\.MINOR"):
        EventEnvelope.model_validate_json(newer_producer("v1"))


def test_producers_stay_strict() -> None:
    # Built in Python (a producer): an unknown attribute is a bug, not a newer peer.
    with pytest.raises(ValidationError, match="region"):
        EventEnvelope(
            source="/t", type="io.memgrid.memory.created", tenant="t", data={}, region="x"
        )  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="major version"):
        EventEnvelope(
            source="/t", type="io.memgrid.memory.created", tenant="t", data={}, schemaversion="2"
        )


class DeadLetters:
    """A faust topic that records what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, key: bytes | None, value: bytes) -> Any:
        self.sent.append(json.loads(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_a_stream_processor_reads_the_minor_and_dead_letters_the_major() -> None:
    pytest.importorskip("faust")
    from shared.streams import envelopes

    def message(value: bytes, offset: int) -> Any:
        msg = SimpleNamespace(topic="memory.created", partition=0, offset=offset, key=b"c9")
        return SimpleNamespace(message=msg, value=value)

    class Stream:
        async def events(self) -> Any:
            yield message(newer_producer("1.1"), 0)
            yield message(newer_producer("2.0"), 1)

    async def read(dlq: DeadLetters) -> list[EventEnvelope]:
        return [e async for _, e in envelopes(Stream(), dead_letter=dlq, group="old-consumer")]

    dlq = DeadLetters()
    read_ok = asyncio.run(read(dlq))
    assert [e.schemaversion for e in read_ok] == ["1.1"]
    [letter] = dlq.sent
    assert letter["data"]["topic"] == "memory.created" and letter["data"]["attempts"] == 0
    assert "reads major version 1 only" in letter["data"]["error"]
