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

Times are the events' own times (when the fact happened), never the clock of
the processor, so replaying the same log yields the same records (issue 4's
replay test relies on it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.schemas.events import (
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryUpdated,
)

# The facts the scheduler keeps statistics from. Others (promoted, demoted,
# expired) are acknowledged and ignored until the policies of issue 4 use them.
TRACKED_TOPICS: tuple[str, ...] = (
    MemoryAccessed.topic,
    MemoryCreated.topic,
    MemoryUpdated.topic,
    MemoryDeleted.topic,
)
Tracked = MemoryAccessed | MemoryCreated | MemoryUpdated | MemoryDeleted
_MODELS: dict[
    str, type[MemoryAccessed] | type[MemoryCreated] | type[MemoryUpdated] | type[MemoryDeleted]
] = {
    MemoryAccessed.topic: MemoryAccessed,
    MemoryCreated.topic: MemoryCreated,
    MemoryUpdated.topic: MemoryUpdated,
    MemoryDeleted.topic: MemoryDeleted,
}


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
    """What the scheduler knows about one cube. Times are epoch seconds (UTC)."""

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
        return "deleted" if self.deleted_at is not None else "active"

    def view(self, *, capped_at: int | None = None) -> dict[str, Any]:
        """The public JSON view (no dedupe bookkeeping); counts of distinct
        members read "at least" once they reach ``capped_at``."""
        return {
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
        }


_FIELDS = frozenset(CubeUsage.__dataclass_fields__)


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
    ) -> None:
        self.state = state
        self.recent_event_ids = recent_event_ids
        self.max_tracked_members = max_tracked_members

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
        before = (record.version, record.created_at, record.updated_at, record.deleted_at)
        record.version = max(record.version, data.version)
        if isinstance(data, MemoryCreated):
            record.created_at = _min(record.created_at, when)
        elif isinstance(data, MemoryUpdated):
            record.updated_at = _max(record.updated_at, when)
        else:  # MemoryDeleted: the tombstone is final
            record.deleted_at = _min(record.deleted_at, when)
        return before != (record.version, record.created_at, record.updated_at, record.deleted_at)

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


class UsageStats:
    """Counters and a latency window of a running processor (for /stats and benches).

    Latency is the time from an event's publication (the Kafka record's
    timestamp) to the end of the batch that applied it.
    """

    def __init__(self, window: int = 100_000) -> None:
        self.received = 0
        self.applied = 0
        self.duplicates = 0
        self.ignored = 0
        self.dead_lettered = 0
        self.batches = 0
        self.first_at: float | None = None  # wall clock of the first batch
        self.last_at: float | None = None
        self._latency_ms: deque[float] = deque(maxlen=window)

    def record(self, result: BatchResult, received: int, now: float) -> None:
        self.received += received
        self.applied += result.applied
        self.duplicates += result.duplicates
        self.ignored += result.ignored
        self.batches += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def observe_latency(self, published_at: Sequence[float], now: float) -> None:
        self._latency_ms.extend((now - t) * 1000.0 for t in published_at)

    def reset_latency(self) -> None:
        self._latency_ms.clear()

    def percentile(self, q: float) -> float | None:
        if not self._latency_ms:
            return None
        ordered = sorted(self._latency_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]

    def as_dict(self, *, latency: bool = True) -> dict[str, Any]:
        """Counters, and latency percentiles if ``latency`` (that sorts the window:
        pollers that only watch progress should leave it out)."""
        body: dict[str, Any] = {
            "received": self.received,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "first_batch_at": self.first_at,
            "last_batch_at": self.last_at,
        }
        if latency:
            body["latency_ms"] = {
                "p50": self.percentile(50),
                "p99": self.percentile(99),
                "window": len(self._latency_ms),
            }
        return body
