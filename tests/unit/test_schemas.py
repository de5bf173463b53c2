"""Property tests of the MemCube and event schemas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.schemas.events import EVENT_TYPES, EventEnvelope, MemoryCreated, make_event
from shared.schemas.memcube import (
    ActivationPayload,
    MemCube,
    Origin,
    PlaintextPayload,
    SemanticType,
    Tier,
)

pytestmark = pytest.mark.unit

aware = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
texts = st.text(min_size=1, max_size=200)


@st.composite
def cubes(draw: st.DrawFn) -> MemCube:
    created = draw(aware)
    return MemCube(
        id=draw(st.uuids()).hex,
        version=draw(st.integers(1, 10_000)),
        tenant=draw(st.text(min_size=1, max_size=20)),
        namespace=draw(st.text(min_size=1, max_size=20)),
        created_at=created,
        updated_at=created,
        event_time=draw(st.none() | aware),
        origin=draw(st.sampled_from(Origin)),
        semantic_type=draw(st.sampled_from(SemanticType)),
        tags=draw(st.lists(st.text(min_size=1, max_size=10), max_size=5)),
        sources=draw(st.lists(st.text(min_size=1, max_size=10), max_size=5)),
        metadata=draw(st.dictionaries(st.text(max_size=8), st.integers() | st.text(), max_size=4)),
        payload=draw(
            st.builds(PlaintextPayload, text=texts)
            | st.builds(
                ActivationPayload,
                blob_key=texts,
                manifest_key=texts,
                model_fingerprint=texts,
                token_count=st.integers(0, 10**6),
            )
        ),
    )


@given(cubes())
def test_memcube_json_round_trip(cube: MemCube) -> None:
    again = MemCube.model_validate_json(cube.model_dump_json())
    assert again == cube
    assert again.tier in (Tier.plaintext, Tier.activation)
    assert (again.text is not None) == (again.tier == Tier.plaintext)


@given(cubes())
def test_created_event_round_trip(cube: MemCube) -> None:
    data = MemoryCreated(
        cube_id=cube.id,
        version=cube.version,
        tier=cube.tier,
        origin=cube.origin,
        semantic_type=cube.semantic_type,
        event_time=cube.event_time,
    )
    env = make_event(data, source="/test", tenant=cube.tenant, namespace=cube.namespace)
    wire = EventEnvelope.model_validate_json(env.model_dump_json())
    assert wire.topic == "memory.created"
    assert wire.key == cube.id
    assert wire.parse() == data


def test_every_event_type_has_a_distinct_topic() -> None:
    assert set(EVENT_TYPES) == {
        "memory.created",
        "memory.updated",
        "memory.deleted",
        "memory.accessed",
        "memory.promoted",
        "memory.demoted",
        "memory.expired",
        "erasure.completed",
        "audit.decision",
    }


def test_naive_datetimes_and_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        MemCube(
            id="a",
            version=1,
            tenant="t",
            namespace="n",
            created_at=datetime(2024, 1, 1),  # naive
            updated_at=datetime(2024, 1, 1, tzinfo=UTC),
            payload=PlaintextPayload(text="x"),
        )
    with pytest.raises(ValidationError):
        PlaintextPayload(text="x", colour="red")  # type: ignore[call-arg]


def test_payload_discriminator_picks_the_tier() -> None:
    cube = MemCube.model_validate(
        {
            "id": "a",
            "version": 1,
            "tenant": "t",
            "namespace": "n",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "payload": {
                "tier": "parametric",
                "adapter_id": "facts@1+abc",
                "blob_key": "k",
                "manifest_key": "m",
                "base_model_fingerprint": "f",
            },
        }
    )
    assert cube.tier == Tier.parametric
    assert cube.text is None
