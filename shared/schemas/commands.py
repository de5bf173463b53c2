"""Commands: requests for work that the scheduler sends to the service that does it.

Facts (shared.schemas.events) say what happened; a command asks one service
(inference, trainer) to do something, and that service then publishes the fact
(memory.promoted / memory.demoted) that confirms it. Commands travel in the same
CloudEvents envelope (type ``io.memgrid.`` + topic), keyed by namespace id so
one namespace's work is done in order, and their JSON Schemas are exported with
the facts' (``python -m shared.topics export docs/events/``).

``command_id`` is deterministic (derived from the decision that caused it) and
is also the envelope's ``id``: a command published twice is one command, and
the confirming fact names it in its ``reason`` so the scheduler can match them.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.schemas.events import TYPE_PREFIX, EventEnvelope

SCHEDULER_SOURCE = "/memgrid/scheduler"


class Command(BaseModel):
    """Base of every command payload; ``topic`` is where it is published."""

    model_config = ConfigDict(extra="allow")  # tolerate fields from newer producers
    topic: ClassVar[str]
    schema_version: ClassVar[str] = "1"

    command_id: str = Field(description="deterministic id; also the envelope's id")
    namespace: str
    reason: str = Field(description="why, with the numbers that caused it")
    issued_at: AwareDatetime = Field(description="the event or tick time of the decision")


class BuildActivation(Command):
    """To inference: build one KV cache from these plaintext cubes, in this order
    (hottest first); publish memory.promoted (plaintext → activation) when stored."""

    topic: ClassVar[str] = "commands.activation.build"
    cube_ids: list[str]
    token_budget: int = Field(ge=1, description="the cache holds at most this many tokens")
    replaces: str | None = Field(
        default=None, description="the cache this one supersedes (evicted once it is confirmed)"
    )


class EvictActivation(Command):
    """To inference: drop this KV cache (it went cold or was superseded). The
    scheduler publishes memory.demoted (activation → plaintext) with it."""

    topic: ClassVar[str] = "commands.activation.evict"
    target_id: str
    cube_ids: list[str]


class TrainAdapter(Command):
    """To trainer: distil these stable plaintext cubes into a LoRA adapter; publish
    memory.promoted (plaintext → parametric) with the adapter id when stored."""

    topic: ClassVar[str] = "commands.adapter.train"
    cube_ids: list[str]


class RetireAdapter(Command):
    """To trainer / inference: stop serving this adapter, too many of its sources
    changed. The scheduler publishes memory.demoted (parametric → plaintext)."""

    topic: ClassVar[str] = "commands.adapter.retire"
    target_id: str
    cube_ids: list[str]
    invalidated: list[str] = Field(description="sources edited, deleted or expired since")


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.topic: cls for cls in (BuildActivation, EvictActivation, TrainAdapter, RetireAdapter)
}


def make_command(
    command: Command, *, tenant: str, source: str = SCHEDULER_SOURCE, time: datetime | None = None
) -> EventEnvelope:
    """The envelope of ``command``; its id is the command id, its key the namespace."""
    return EventEnvelope(
        id=command.command_id,
        source=source,
        type=TYPE_PREFIX + command.topic,
        subject=None,
        tenant=tenant,
        namespace=command.namespace,
        schemaversion=command.schema_version,
        time=time or command.issued_at,
        data=command.model_dump(mode="json"),
    )
