"""Event envelope (CloudEvents 1.0 + memgrid extensions) and the memory.* facts.

The envelope attributes and event type names are a public contract: outside
subscribers read them. ``schemaversion`` (``MAJOR`` or ``MAJOR.MINOR``) lets an
old consumer and a new producer coexist during a rolling upgrade
(docs/events.md#versioning-and-rolling-upgrades): within a major version
producers only add optional fields, and a consumer reading an event (from
JSON, as every bus does) ignores envelope attributes and data fields it does
not know, and accepts any minor version; an event of a major version this code
does not know fails validation with a clear error, which the buses answer by
dead-lettering it at once. Envelopes built in Python stay strict (an unknown
attribute is a bug there).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.schemas.memcube import LifecycleState, Origin, SemanticType, Tier, utcnow

SPEC_VERSION = "1.0"
TYPE_PREFIX = "io.memgrid."
# The major schema versions of event and command types this code reads. During a
# breaking change it holds the old and the new major (docs/events.md).
READ_MAJORS = frozenset({1})
# Validation context of envelopes read from the wire (see EventEnvelope.model_validate_json).
_READ = "memgrid_read"


class EventData(BaseModel):
    """Base of every event payload; ``topic`` is where it is published."""

    model_config = ConfigDict(extra="allow")  # tolerate fields from newer producers
    topic: ClassVar[str]
    schema_version: ClassVar[str] = "1"


class MemoryCreated(EventData):
    topic: ClassVar[str] = "memory.created"
    cube_id: str
    version: int
    tier: Tier
    origin: Origin
    semantic_type: SemanticType
    tags: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    event_time: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    principal: str | None = None
    decay_half_life_seconds: int | None = Field(
        default=None, description="the lifespan's decay rule, if any (the scheduler applies it)"
    )
    token_estimate: int | None = Field(
        default=None, ge=0, description="approximate tokens of the text (KV cache budgets)"
    )
    sensitivity_tags: list[str] = Field(
        default_factory=list,
        description="PII / secret kinds found at ingest, e.g. pii:email (docs/compliance.md)",
    )


class MemoryUpdated(EventData):
    topic: ClassVar[str] = "memory.updated"
    cube_id: str
    version: int
    previous_version: int
    changed: list[str]
    principal: str | None = None
    sensitivity_tags: list[str] = Field(
        default_factory=list,
        description="PII / secret kinds found at ingest, e.g. pii:email (docs/compliance.md)",
    )


class MemoryDeleted(EventData):
    topic: ClassVar[str] = "memory.deleted"
    cube_id: str
    version: int
    reason: str = "deleted by client"
    principal: str | None = None


class MemoryAccessed(EventData):
    topic: ClassVar[str] = "memory.accessed"
    cube_id: str
    version: int
    channel: str = Field(description="search | inference")
    query_id: str
    rank: int = Field(ge=1)
    score: float
    principal: str | None = None
    session_id: str | None = None


class MemoryPromoted(EventData):
    topic: ClassVar[str] = "memory.promoted"
    cube_ids: list[str]
    from_tier: Tier
    to_tier: Tier
    target_id: str = Field(description="the KV cache or adapter id")
    reason: str
    command_id: str | None = Field(
        default=None, description="the scheduler's command this carries out, if any"
    )


class MemoryDemoted(EventData):
    topic: ClassVar[str] = "memory.demoted"
    cube_ids: list[str]
    from_tier: Tier
    to_tier: Tier
    target_id: str
    reason: str
    command_id: str | None = Field(
        default=None, description="the scheduler's command this carries out, if any"
    )


class MemoryExpired(EventData):
    topic: ClassVar[str] = "memory.expired"
    cube_id: str
    version: int
    reason: str
    previous_state: LifecycleState | None = None


class ErasureCompleted(EventData):
    """An erasure ran (docs/compliance.md#right-to-erasure). Counts and the subject's
    sha256 digest only: the audit log keeps that it happened, never the content."""

    topic: ClassVar[str] = "erasure.completed"
    erasure_id: str
    subject_kind: str
    subject_digest: str
    namespaces: list[str] = Field(default_factory=list)
    cubes_erased: int = Field(ge=0)
    versions_purged: int = Field(ge=0)
    kv_caches_evicted: int = Field(ge=0)
    adapters_stale: int = Field(ge=0)
    principal: str | None = None


class ApiDecision(EventData):
    """The outcome of one API request, denials included (docs/security.md).

    Never the body, the query text or the key: the route template, the ids in the
    path, who asked (principal and key prefix) and what was answered."""

    topic: ClassVar[str] = "audit.decision"
    request_id: str
    method: str
    route: str
    path_ids: dict[str, str] = Field(default_factory=dict)
    status: int
    outcome: str = Field(description="allow | deny | reject | error")
    code: str | None = None
    principal: str | None = None
    key_prefix: str | None = None
    role: str | None = None


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.topic: cls
    for cls in (
        MemoryCreated,
        MemoryUpdated,
        MemoryDeleted,
        MemoryAccessed,
        MemoryPromoted,
        MemoryDemoted,
        MemoryExpired,
        ErasureCompleted,
        ApiDecision,
    )
}


class EventEnvelope(BaseModel):
    """CloudEvents 1.0 structured-mode event with memgrid extension attributes.

    Extension attribute names follow CloudEvents rules (lower-case letters and
    digits only): ``tenant``, ``namespace``, ``schemaversion``, ``traceparent``.
    """

    model_config = ConfigDict(extra="forbid")

    specversion: str = SPEC_VERSION
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: AwareDatetime = Field(default_factory=utcnow)
    datacontenttype: str = "application/json"
    tenant: str
    namespace: str | None = None
    schemaversion: str = "1"
    traceparent: str | None = None
    data: dict[str, Any]

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *, context: Any | None = None, **kwargs: Any
    ) -> Self:
        """Reads an envelope as a consumer does: attributes a newer producer added
        are ignored instead of failing the event (extra="forbid" stays for
        envelopes built in Python)."""
        read_context = {**(context or {}), _READ: True}
        return super().model_validate_json(json_data, context=read_context, **kwargs)

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown_on_read(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get(_READ):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data

    @field_validator("schemaversion")
    @classmethod
    def _known_major(cls, value: str) -> str:
        major, dot, minor = value.partition(".")
        if not major.isdigit() or (dot and not minor.isdigit()):
            raise ValueError(f"schemaversion {value!r} is not MAJOR or MAJOR.MINOR")
        if int(major) not in READ_MAJORS:
            known = ", ".join(str(m) for m in sorted(READ_MAJORS))
            raise ValueError(
                f"schemaversion {value}: this consumer reads major version {known} only"
                " (a newer producer's breaking change: consumers must be upgraded first)"
            )
        return value

    @property
    def topic(self) -> str:
        return self.type.removeprefix(TYPE_PREFIX)

    @property
    def key(self) -> str:
        """Partition key: the cube id (subject), else the namespace, else the tenant."""
        return self.subject or self.namespace or self.tenant

    def parse(self) -> EventData:
        """The typed payload; raises pydantic.ValidationError for a malformed one."""
        cls = EVENT_TYPES.get(self.topic)
        if cls is None:
            raise KeyError(f"unknown event type {self.type}")
        return cls.model_validate(self.data)


def make_event(
    data: EventData,
    *,
    source: str,
    tenant: str,
    namespace: str | None,
    subject: str | None = None,
    traceparent: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    return EventEnvelope(
        source=source,
        type=TYPE_PREFIX + data.topic,
        subject=subject if subject is not None else getattr(data, "cube_id", None),
        tenant=tenant,
        namespace=namespace,
        schemaversion=data.schema_version,
        traceparent=traceparent,
        time=time or utcnow(),
        data=data.model_dump(mode="json"),
    )
