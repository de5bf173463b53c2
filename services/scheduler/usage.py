"""Per-cube usage statistics from memory events: the scheduler's processing logic.

Plain Python with no faust in sight, so that both ways of running share it: the
faust agent (``services.scheduler.stream``) feeds it batches read from Kafka, and
``services.scheduler.inproc`` feeds it from the EventBus port in embedded mode.
State lives in any ``MutableMapping[str, dict]``: a faust Table (every write
goes to the table's compacted changelog topic, so state survives a restart) or
a plain dict. Records are stored as JSON-ready dicts for that reason.

Delivery is at least once, so every effect must be idempotent:

* ``memory.accessed`` adds to counters, which is not idempotent by itself. A
  redelivery after a crash replays events from the last committed offset: the
  record remembers, per source partition, the last offset applied to it
  (``Position``), and the changelog stores that watermark in the same value as
  the counters, so both are restored together. A duplicate *publish* (same
  event id at another offset) is caught by a short ring of recent event ids.
* ``memory.created`` / ``updated`` / ``deleted`` only move times and versions
  with min/max: applying one twice, or out of order (they travel on different
  topics, so their relative order is not guaranteed), gives the same record.

* ``memory.expired`` stamps ``expired_at`` with min, like the other lifecycle facts.

Times are the events' own times (when the fact happened), never the clock of
the processor, so replaying the same log yields the same records (issue 4's
replay test relies on it). The decayed frequency and the decay rule's vitality
(services.scheduler.scores) are updated with event times for the same reason.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.scheduler.scores import Scores, decay_add
from services.scheduler.stats import UsageStats as UsageStats  # re-exported
from shared.schemas.events import (
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryExpired,
    MemoryUpdated,
)

# The per-cube facts the scheduler keeps statistics from. The namespace-wide
# ones (promoted, demoted) are the policies' (services.scheduler.engine).
TRACKED_TOPICS: tuple[str, ...] = (
    MemoryAccessed.topic,
    MemoryCreated.topic,
    MemoryUpdated.topic,
    MemoryDeleted.topic,
    MemoryExpired.topic,
)
Tracked = MemoryAccessed | MemoryCreated | MemoryUpdated | MemoryDeleted | MemoryExpired
_MODELS: dict[str, type[Tracked]] = {
    MemoryAccessed.topic: MemoryAccessed,
    MemoryCreated.topic: MemoryCreated,
    MemoryUpdated.topic: MemoryUpdated,
    MemoryDeleted.topic: MemoryDeleted,
    MemoryExpired.topic: MemoryExpired,
}
DEFAULT_HALF_LIFE_S = 86_400.0  # SchedulerPolicy.half_life_s


class PoisonEvent(ValueError):
    """An event that can never be applied (bad payload, conflicting tenant):
    retrying cannot help, so the caller sends it to the dead-letter topic."""


@dataclass(frozen=True)
class Position:
    """Where an event was read: Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True)
class Delivery:
    event: EventEnvelope
    position: Position | None = None  # None on the in-process bus (no offsets)


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0  # event types the scheduler does not track
    rejected: list[tuple[int, PoisonEvent]] = field(default_factory=list)  # (index, why)
    touched: list[str] = field(default_factory=list)  # cube ids whose record changed


def _ts(value: datetime) -> float:
    return value.timestamp()


def _iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)


@dataclass
class CubeUsage:
    """What the scheduler knows about one cube. Times are epoch seconds (UTC).

    Fields added later have defaults, so records written by an older version
    load unchanged (their scores start from what they have).
    """

    cube_id: str
    tenant: str
    namespace: str | None = None
    access_count: int = 0
    first_access: float | None = None
    last_access: float | None = None
    principals: list[str] = field(default_factory=list)  # distinct, capped
    sessions: list[str] = field(default_factory=list)  # distinct, capped
    version: int = 0  # highest version seen in lifecycle events
    created_at: float | None = None
    updated_at: float | None = None
    deleted_at: float | None = None
    seen: list[str] = field(default_factory=list)  # recent accessed event ids, newest last
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> offset
    # For the scores (services.scheduler.scores) and the policies.
    freq: float = 0.0  # decayed access frequency as of freq_at
    freq_at: float | None = None
    tier: str | None = None
    tokens: int | None = None  # memory.created's token estimate
    expires_at: float | None = None  # TTL
    expired_at: float | None = None
    decay_half_life_s: float | None = None  # the lifespan's decay rule
    vitality: float = 0.0  # decayed with decay_half_life_s, as of vitality_at
    vitality_at: float | None = None
    retired: str | None = None  # "merged" / "expired": set by the scheduler's own decisions

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CubeUsage:
        if not _FIELDS.issuperset(data):
            # A record written by a newer version: drop what this one does not know.
            data = {k: v for k, v in data.items() if k in _FIELDS}
        record = cls(**data)
        # Own copies: the stored value must not change before it is written back.
        record.principals = list(record.principals)
        record.sessions = list(record.sessions)
        record.seen = list(record.seen)
        record.offsets = dict(record.offsets)
        return record

    @property
    def state(self) -> str:
        if self.deleted_at is not None:
            return "deleted"
        if self.expired_at is not None:
            return "expired"
        return self.retired or "active"

    @property
    def born(self) -> float | None:
        """Creation time; the first access stands in until memory.created arrives."""
        return self.created_at if self.created_at is not None else self.first_access

    @property
    def last_edit(self) -> float | None:
        return self.updated_at if self.updated_at is not None else self.created_at

    @property
    def session_count(self) -> int:
        return len(self.sessions)

    def view(
        self,
        *,
        capped_at: int | None = None,
        scores: Scores | None = None,
        decisions: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The public JSON view (no dedupe bookkeeping); counts of distinct
        members read "at least" once they reach ``capped_at``. ``scores`` (as of
        some time) and ``decisions`` (the journal's entries) are added when given:
        that is the explain view (services.scheduler.engine.explain)."""
        body: dict[str, Any] = {
            "cube_id": self.cube_id,
            "tenant": self.tenant,
            "namespace": self.namespace,
            "access_count": self.access_count,
            "first_access": _iso(self.first_access),
            "last_access": _iso(self.last_access),
            "distinct_principals": len(self.principals),
            "distinct_sessions": len(self.sessions),
            "members_capped": capped_at is not None
            and max(len(self.principals), len(self.sessions)) >= capped_at,
            "version": self.version,
            "state": self.state,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "deleted_at": _iso(self.deleted_at),
            "expired_at": _iso(self.expired_at),
            "tier": self.tier,
            "expires_at": _iso(self.expires_at),
            "decay_half_life_s": self.decay_half_life_s,
        }
        if scores is not None:
            body["scores"] = scores.view()
        if decisions is not None:
            body["decisions"] = decisions
        return body


_FIELDS = frozenset(CubeUsage.__dataclass_fields__)


def _lifecycle(record: CubeUsage) -> tuple[Any, ...]:
    return (
        record.version,
        record.created_at,
        record.updated_at,
        record.deleted_at,
        record.expired_at,
        record.tier,
        record.expires_at,
    )


class UsageProcessor:
    """Applies memory events to per-cube usage records in ``state``.

    ``process`` takes a batch and writes each touched record back once at the
    end: with a faust Table that is one changelog message per cube per batch
    rather than one per event, which is what lets one worker keep up with
    thousands of accesses a second.
    """

    def __init__(
        self,
        state: MutableMapping[str, Any],
        *,
        recent_event_ids: int = 8,
        max_tracked_members: int = 256,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
    ) -> None:
        self.state = state
        self.recent_event_ids = recent_event_ids
        self.max_tracked_members = max_tracked_members
        self.half_life_s = half_life_s

    def usage(self, cube_id: str) -> CubeUsage | None:
        data = self.state.get(cube_id)
        return None if data is None else CubeUsage.from_dict(data)

    def check(self, event: EventEnvelope) -> None:
        """Raises PoisonEvent for an event that ``process`` would reject as malformed."""
        self._parse(event)

    def process(self, deliveries: Sequence[Delivery]) -> BatchResult:
        result = BatchResult()
        records: dict[str, CubeUsage] = {}
        dirty: dict[str, None] = {}  # insertion-ordered set
        for index, delivery in enumerate(deliveries):
            event = delivery.event
            try:
                data = self._parse(event)
                if data is None:
                    result.ignored += 1
                    continue
                record = records.get(data.cube_id)
                if record is None:
                    record = self._load(data.cube_id, event)
                    records[data.cube_id] = record
                if record.tenant != event.tenant:
                    # Cube ids are globally unique: another tenant's event about
                    # this cube is forged or corrupt, never merged into its stats.
                    raise PoisonEvent(
                        f"cube {data.cube_id} belongs to another tenant than event {event.id}"
                    )
            except PoisonEvent as exc:
                result.rejected.append((index, exc))
                continue
            if self._apply(record, event, data, delivery.position):
                result.applied += 1
                dirty[data.cube_id] = None
            else:
                result.duplicates += 1
        for cube_id in dirty:
            self.state[cube_id] = records[cube_id].to_dict()
        result.touched = list(dirty)
        return result

    # --- internals -----------------------------------------------------------------

    def _parse(self, event: EventEnvelope) -> Tracked | None:
        model = _MODELS.get(event.topic)
        if model is None:
            return None
        try:
            data = model.model_validate(event.data)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise PoisonEvent(f"invalid {event.topic} payload: {exc}") from exc
        if not data.cube_id:
            raise PoisonEvent(f"{event.topic} event {event.id} has an empty cube_id")
        return data

    def _load(self, cube_id: str, event: EventEnvelope) -> CubeUsage:
        data = self.state.get(cube_id)
        if data is None:
            return CubeUsage(cube_id=cube_id, tenant=event.tenant, namespace=event.namespace)
        return CubeUsage.from_dict(data)

    def _apply(
        self,
        record: CubeUsage,
        event: EventEnvelope,
        data: Tracked,
        position: Position | None,
    ) -> bool:
        """Applies one event; False when it was already applied (a duplicate)."""
        if record.namespace is None:
            record.namespace = event.namespace
        when = _ts(event.time)
        if isinstance(data, MemoryAccessed):
            return self._accessed(record, event, data, when, position)
        # Lifecycle facts: min/max only, idempotent and order-insensitive.
        before = _lifecycle(record)
        record.version = max(record.version, data.version)
        if isinstance(data, MemoryCreated):
            self._created(record, data, when)
        elif isinstance(data, MemoryUpdated):
            # A lifecycle move (the vault's transition or merge) is not an edit of
            # the content: it must not invalidate adapters or reset stability.
            if set(data.changed) != {"lifecycle"}:
                record.updated_at = _max(record.updated_at, when)
        elif isinstance(data, MemoryExpired):
            record.expired_at = _min(record.expired_at, when)
        else:  # MemoryDeleted: the tombstone is final
            record.deleted_at = _min(record.deleted_at, when)
        return before != _lifecycle(record)

    @staticmethod
    def _created(record: CubeUsage, data: MemoryCreated, when: float) -> None:
        first = record.created_at is None
        record.created_at = _min(record.created_at, when)
        record.tier = str(data.tier)
        record.tokens = data.token_estimate
        record.expires_at = None if data.expires_at is None else _ts(data.expires_at)
        if first and data.decay_half_life_seconds:
            # Creation counts as one use (scores.py); only once, so a duplicate
            # memory.created does not add to it. Accesses applied before the
            # rule was known are not in it: the cube may expire a little early.
            record.decay_half_life_s = float(data.decay_half_life_seconds)
            record.vitality, record.vitality_at = decay_add(
                record.vitality, record.vitality_at, when, record.decay_half_life_s
            )

    def _accessed(
        self,
        record: CubeUsage,
        event: EventEnvelope,
        data: MemoryAccessed,
        when: float,
        position: Position | None,
    ) -> bool:
        if position is not None:
            last = record.offsets.get(position.source)
            if last is not None and position.offset <= last:
                return False  # replayed after a restart: already counted
        if event.id in record.seen:
            return False  # the same event published twice
        record.access_count += 1
        record.freq, record.freq_at = decay_add(record.freq, record.freq_at, when, self.half_life_s)
        if record.decay_half_life_s is not None:
            record.vitality, record.vitality_at = decay_add(
                record.vitality, record.vitality_at, when, record.decay_half_life_s
            )
        record.first_access = _min(record.first_access, when)
        record.last_access = _max(record.last_access, when)
        cap = self.max_tracked_members
        # Distinct members, capped: a popular cube must not grow without bound.
        for member, members in (
            (data.principal, record.principals),
            (data.session_id, record.sessions),
        ):
            if member and len(members) < cap and member not in members:
                members.append(member)
        record.seen.append(event.id)
        if len(record.seen) > self.recent_event_ids:
            del record.seen[: len(record.seen) - self.recent_event_ids]
        if position is not None:
            record.offsets[position.source] = position.offset
        return True
