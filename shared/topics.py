"""Every Kafka topic memgrid uses, declared once, and their public JSON Schemas.

Topic names, keys and payload schemas are a public contract (DESIGN.md §3):
outside subscribers read them with their own consumer groups. Services never
spell a topic name themselves; they take it from here (``MEMORY_ACCESSED.name``)
or from the event model (``MemoryAccessed.topic``), which these specs are built from.

``ensure_topics`` creates the missing ones with their partition count, retention
and cleanup policy; the Kafka bus calls it on start, so any service that starts
first creates them and a second start changes nothing.

``python -m shared.topics export docs/events/`` writes the JSON Schemas of the
envelope, of every event payload and of the dead-letter payload, plus a topic
catalogue, for subscribers written in other languages.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.commands import (
    COMMAND_TYPES,
    BuildActivation,
    EvictActivation,
    RetireAdapter,
    TrainAdapter,
)
from shared.schemas.events import (
    EVENT_TYPES,
    TYPE_PREFIX,
    ApiDecision,
    ErasureCompleted,
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryDemoted,
    MemoryExpired,
    MemoryPromoted,
    MemoryUpdated,
)
from shared.settings import BusSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
DEAD_LETTER_TYPE = TYPE_PREFIX + "deadletter"  # the same type the in-process bus uses
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as memgrid creates it.

    ``partitions`` bounds a consumer group's parallelism and can only grow
    later (growing it moves keys to other partitions, so per-cube order breaks
    for events in flight); ``retention_ms`` of -1 keeps records forever.
    """

    name: str
    partitions: int
    retention_ms: int
    compacted: bool
    key_description: str
    description: str = ""
    max_message_bytes: int | None = None  # None: the broker's default (1 MB)

    def configs(self) -> dict[str, str]:
        """Topic-level configs for CreateTopics. A compacted topic with a finite
        retention is also trimmed by age (``compact,delete``), as a windowed
        table's changelog needs."""
        if not self.compacted:
            policy = "delete"
        else:
            policy = "compact" if self.retention_ms < 0 else "compact,delete"
        configs = {"cleanup.policy": policy, "retention.ms": str(self.retention_ms)}
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs


_CUBE_KEY = "cube id (the envelope's subject): one cube's events stay ordered in one partition"
_CUBES_KEY = "namespace id: events about several cubes of one namespace stay ordered"

# Facts. Retention is long enough for an outside subscriber (audit, analytics)
# that was down for weeks to catch up; facts are never compacted, since every
# event matters, not only the latest per key.
MEMORY_CREATED = TopicSpec(
    MemoryCreated.topic, 6, 30 * DAY_MS, False, _CUBE_KEY, "a cube version was committed"
)
MEMORY_UPDATED = TopicSpec(
    MemoryUpdated.topic, 6, 30 * DAY_MS, False, _CUBE_KEY, "a new version of a cube"
)
MEMORY_DELETED = TopicSpec(
    MemoryDeleted.topic, 6, 30 * DAY_MS, False, _CUBE_KEY, "a cube was deleted (tombstone)"
)
# The busiest topic by far (one event per search hit): more partitions so the
# scheduler's processors can scale out, and a shorter retention.
MEMORY_ACCESSED = TopicSpec(
    MemoryAccessed.topic, 12, 7 * DAY_MS, False, _CUBE_KEY, "a cube was used by search/inference"
)
MEMORY_PROMOTED = TopicSpec(
    MemoryPromoted.topic, 6, 30 * DAY_MS, False, _CUBES_KEY, "cubes moved to a higher tier"
)
MEMORY_DEMOTED = TopicSpec(
    MemoryDemoted.topic, 6, 30 * DAY_MS, False, _CUBES_KEY, "cubes moved to a lower tier"
)
MEMORY_EXPIRED = TopicSpec(
    MemoryExpired.topic, 6, 30 * DAY_MS, False, _CUBE_KEY, "a cube reached the end of its life"
)
ERASURE_COMPLETED = TopicSpec(
    ErasureCompleted.topic,
    3,
    30 * DAY_MS,
    False,
    "tenant id: one tenant's erasures stay ordered",
    "an erasure ran: counts and the subject's digest, never the content",
)
AUDIT_DECISION = TopicSpec(
    ApiDecision.topic,
    3,
    30 * DAY_MS,
    False,
    "tenant id: one tenant's decisions stay ordered",
    "the API's decisions, denials included (the audit log keeps them for good)",
)

# Commands: requests for work, consumed by the one service that does it, which
# then publishes the fact. A week covers any outage of the worker.
ACTIVATION_BUILD = TopicSpec(
    BuildActivation.topic,
    3,
    7 * DAY_MS,
    False,
    "namespace id: one namespace's cache builds run in order",
    "build a KV cache from a set of hot cubes (inference)",
)
ACTIVATION_EVICT = TopicSpec(
    EvictActivation.topic,
    3,
    7 * DAY_MS,
    False,
    "namespace id: after the namespace's builds",
    "drop a KV cache that went cold or was superseded (inference)",
)
ADAPTER_TRAIN = TopicSpec(
    TrainAdapter.topic,
    3,
    7 * DAY_MS,
    False,
    "namespace id: one namespace's training jobs run in order",
    "distil stable cubes into a LoRA adapter (trainer)",
)
ADAPTER_RETIRE = TopicSpec(
    RetireAdapter.topic,
    3,
    7 * DAY_MS,
    False,
    "namespace id: after the namespace's training jobs",
    "stop serving an adapter whose sources changed (trainer, inference)",
)
MEMORY_EXPIRE = TopicSpec(
    "commands.memory.expire",
    3,
    7 * DAY_MS,
    False,
    _CUBE_KEY,
    "expire a cube now (vault)",
)

FACT_TOPICS: tuple[TopicSpec, ...] = (
    MEMORY_CREATED,
    MEMORY_UPDATED,
    MEMORY_DELETED,
    MEMORY_ACCESSED,
    MEMORY_PROMOTED,
    MEMORY_DEMOTED,
    MEMORY_EXPIRED,
    ERASURE_COMPLETED,
    AUDIT_DECISION,
)
COMMAND_TOPICS: tuple[TopicSpec, ...] = (
    ACTIVATION_BUILD,
    ACTIVATION_EVICT,
    ADAPTER_TRAIN,
    ADAPTER_RETIRE,
    MEMORY_EXPIRE,
)

assert {s.name for s in FACT_TOPICS} == set(EVENT_TYPES), "every event type needs a topic"
assert set(COMMAND_TYPES) <= {s.name for s in COMMAND_TOPICS}, "every command needs a topic"


def dead_letter_spec(name: str) -> TopicSpec:
    """The dead-letter topic; its name is a setting (``bus.dead_letter_topic``)."""
    # One partition: an operator reads it as one list, and its volume is tiny.
    return TopicSpec(
        name,
        1,
        30 * DAY_MS,
        False,
        "the failed message's key",
        "messages a consumer group could not process, with the error attached",
    )


# Tenant named on a dead letter whose message could not be read (no tenant ids
# can be this word: they are generated as t_<random>).
UNREADABLE_TENANT = "unknown"


def topic_specs(bus: BusSettings | None = None) -> tuple[TopicSpec, ...]:
    """Every declared topic, with the dead-letter topic named as ``bus`` says."""
    dlq = (bus or BusSettings()).dead_letter_topic
    return (*FACT_TOPICS, *COMMAND_TOPICS, dead_letter_spec(dlq))


def spec_for(name: str, bus: BusSettings | None = None) -> TopicSpec | None:
    """The declared spec of ``name``, or None for a topic memgrid does not declare."""
    for spec in topic_specs(bus):
        if spec.name == name:
            return spec
    return None


def ensure_topics(
    admin_client: Any,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = -1,
    timeout_ms: int = 30_000,
) -> list[str]:
    """Creates the topics of ``specs`` that do not exist; returns the names it created.

    ``admin_client`` is a kafka-python ``KafkaAdminClient``. Idempotent: existing
    topics are left as they are (their partitions and configs are not changed;
    a mismatch in partitions is logged), and a topic created concurrently by
    another service counts as existing. ``replication_factor`` -1 takes the
    broker's ``default.replication.factor``.
    """
    from kafka.errors import TopicAlreadyExistsError

    wanted = {s.name: s for s in specs}
    if not wanted:
        return []
    existing = {t["name"]: t for t in admin_client.describe_topics(list(wanted))}
    missing = []
    for name, spec in wanted.items():
        info = existing.get(name)
        if info is not None and info.get("error_code", 0) == 0:
            n = len(info.get("partitions") or [])
            if n and n != spec.partitions:
                log.warning("topic %s has %d partitions, declared %d", name, n, spec.partitions)
            continue
        missing.append(spec)
    if not missing:
        return []
    request = {
        s.name: {
            "num_partitions": s.partitions,
            "replication_factor": replication_factor,
            "configs": s.configs(),
        }
        for s in missing
    }
    result = admin_client.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    created = []
    for topic in result["topics"]:
        code = topic["error_code"]
        if code == 0:
            created.append(topic["name"])
        elif code != TopicAlreadyExistsError.errno:  # another service won the race
            from kafka.errors import for_code

            raise for_code(code)(f"cannot create topic {topic['name']}: {topic['error_message']}")
    # CreateTopics returns before every partition has a leader; producing or
    # joining a group right away would then fail or see no partitions.
    admin_client.wait_for_topics([s.name for s in missing], timeout_ms=timeout_ms)
    if created:
        log.info("created topics %s", ", ".join(created))
    return created


def create_missing_topics(bus: BusSettings, specs: Sequence[TopicSpec], client: str) -> list[str]:
    """``ensure_topics`` on the Kafka of ``bus`` with an admin client of its own
    (``<bus.client_id>-<client>``); Unavailable when Kafka cannot be reached."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from shared.adapters.bus_kafka import bootstrap_servers
    from shared.errors import Unavailable

    timeout_ms = int(bus.publish_timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers(bus.url),
            client_id=f"{bus.client_id}-{client}",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise Unavailable(f"kafka unreachable: {exc}", code="bus_unavailable") from exc
    try:
        return ensure_topics(
            admin, specs, replication_factor=bus.replication_factor, timeout_ms=timeout_ms
        )
    except KafkaError as exc:
        raise Unavailable(f"cannot create topics: {exc}", code="bus_unavailable") from exc
    finally:
        admin.close()


# --- dead letters ----------------------------------------------------------------------


class DeadLetter(BaseModel):
    """``data`` of an event on the dead-letter topic (type ``io.memgrid.deadletter``).

    The envelope's tenant, namespace, subject and traceparent are the failed
    event's, when it could be read.
    """

    model_config = ConfigDict(extra="allow")

    topic: str = Field(description="where the failed message was read")
    group: str = Field(description="the consumer group that gave up on it")
    key: str | None = Field(default=None, description="the message key")
    error: str = Field(description="exception type and message of the last failure")
    attempts: int = Field(description="deliveries tried; 0 when the message was unreadable")
    event: dict[str, Any] | None = Field(
        default=None, description="the failed event's envelope, when it was a valid one"
    )
    raw: str | None = Field(
        default=None, description="the message value, base64, when it was not a valid envelope"
    )
    partition: int | None = None
    offset: int | None = None


def make_dead_letter(
    *,
    topic: str,
    group: str,
    key: str | None,
    error: BaseException | str,
    attempts: int,
    event: EventEnvelope | None = None,
    raw: bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
    source: str = "memgrid.bus",
) -> EventEnvelope:
    """The envelope to publish on the dead-letter topic for one failed message."""
    letter = DeadLetter(
        topic=topic,
        group=group,
        key=key,
        error=error if isinstance(error, str) else f"{type(error).__name__}: {error}",
        attempts=attempts,
        event=event.model_dump(mode="json") if event is not None else None,
        raw=base64.b64encode(raw).decode() if raw is not None and event is None else None,
        partition=partition,
        offset=offset,
    )
    return EventEnvelope(
        source=source,
        type=DEAD_LETTER_TYPE,
        subject=event.subject if event is not None else None,
        # An unreadable message has no tenant we could trust: it is filed under
        # the reserved tenant name "unknown", never under a guessed tenant.
        tenant=event.tenant if event is not None else UNREADABLE_TENANT,
        namespace=event.namespace if event is not None else None,
        traceparent=event.traceparent if event is not None else None,
        data=letter.model_dump(mode="json", exclude_none=True),
    )


# --- JSON Schema export ----------------------------------------------------------------


def _envelope_schema() -> dict[str, Any]:
    """The envelope's JSON Schema. ``id``, ``specversion`` and ``time`` have defaults
    for whoever builds an envelope in Python, but producers always write them
    (CloudEvents requires the first two), so subscribers may rely on them."""
    schema = EventEnvelope.model_json_schema()
    schema["required"] = sorted({*schema.get("required", []), "id", "specversion", "time"})
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for docs/events/."""
    schemas: dict[str, dict[str, Any]] = {"envelope.json": _envelope_schema()}
    for name, cls in sorted(EVENT_TYPES.items()):
        # Validation mode: a field added later within a schema version is
        # optional, so events written by older producers still validate.
        schema = cls.model_json_schema()
        schema["$comment"] = (
            f"data of events of type {TYPE_PREFIX}{name} on topic {name}, "
            f"schemaversion {cls.schema_version}"
        )
        schemas[f"{name}.json"] = schema
    for name, command in sorted(COMMAND_TYPES.items()):
        schema = command.model_json_schema()
        schema["$comment"] = (
            f"data of commands of type {TYPE_PREFIX}{name} on topic {name}, "
            f"schemaversion {command.schema_version}"
        )
        schemas[f"{name}.json"] = schema
    dead = DeadLetter.model_json_schema()
    dead["$comment"] = f"data of events of type {DEAD_LETTER_TYPE} on the dead-letter topic"
    schemas["deadletter.json"] = dead
    for schema in schemas.values():
        schema["$schema"] = JSON_SCHEMA_DIALECT  # what pydantic generates
    schemas["topics.json"] = {
        "$comment": "memgrid topics (shared/topics.py); the dead-letter name is a setting",
        "topics": [_catalogue_entry(s) for s in topic_specs()],
    }
    return schemas


def _catalogue_entry(spec: TopicSpec) -> dict[str, Any]:
    if spec in FACT_TOPICS:
        kind, event_type, schema = "fact", TYPE_PREFIX + spec.name, f"{spec.name}.json"
    elif spec.name in COMMAND_TYPES:
        kind, event_type, schema = "command", TYPE_PREFIX + spec.name, f"{spec.name}.json"
    elif spec in COMMAND_TOPICS:
        kind, event_type, schema = "command", None, None  # payload not specified yet
    else:
        kind, event_type, schema = "dead-letter", DEAD_LETTER_TYPE, "deadletter.json"
    return {
        "name": spec.name,
        "kind": kind,
        "partitions": spec.partitions,
        "retention_ms": spec.retention_ms,
        "cleanup_policy": spec.configs()["cleanup.policy"],
        "key": spec.key_description,
        "description": spec.description,
        "event_type": event_type,
        "schema": schema,
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.topics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the events' JSON Schemas to a directory")
    ex.add_argument("directory", type=Path)
    sub.add_parser("list", help="print the declared topics")
    args = parser.parse_args(argv)
    if args.command == "export":
        for path in export(args.directory):
            print(path)
    else:
        for s in topic_specs():
            print(f"{s.name:28} partitions={s.partitions:<3} retention_ms={s.retention_ms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
