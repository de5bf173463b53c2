"""In-process EventBus: ``memory://`` (embedded mode and tests).

Each topic is an append-only log held in memory. A consumer group keeps an
offset per topic; each subscription runs one dispatcher thread that hands its
topics' events to the handler in publish order (so per-key order holds, and
across the subscription's topics too). The offset moves only after the handler
returns. Offsets outlive subscriptions, as committed offsets do in Kafka: a
group that subscribes again resumes where it stopped; a new group starts at the
beginning of the log.

Within a group one live subscription owns a topic at a time (like a
single-partition Kafka topic); another subscription of the same group to the
same topic waits as a standby and takes over when the owner closes.

Events cross the bus as JSON, as they would over Kafka: a handler gets its own
copy and a non-serialisable event fails at ``publish``, not in a consumer.

Nothing survives the process; this bus is for one process, not for durability.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.trace import Span

from shared.errors import Unavailable
from shared.metrics import DEAD_LETTERED, EVENTS_CONSUMED, EVENTS_PUBLISHED, HANDLER_FAILURES
from shared.ports.bus import Handler
from shared.schemas.events import TYPE_PREFIX, EventEnvelope
from shared.settings import BusSettings
from shared.telemetry import mark_error, process_span, send_span

log = logging.getLogger(__name__)

DEAD_LETTER_TYPE = TYPE_PREFIX + "deadletter"
# messaging.system of this bus's spans (not one of the semantic conventions' brokers).
MESSAGING_SYSTEM = "memgrid_memory"


@dataclass(frozen=True)
class _Record:
    seq: int  # global publish order, across topics
    key: str
    payload: str  # the envelope as JSON


@dataclass
class _Group:
    offsets: dict[str, int] = field(default_factory=dict)
    owners: dict[str, MemorySubscription] = field(default_factory=dict)


class MemoryEventBus:
    def __init__(
        self,
        dead_letter_topic: str = "memgrid.deadletter",
        max_delivery_attempts: int = 5,
        retry_backoff_s: float = 0.005,
    ) -> None:
        self.dead_letter_topic = dead_letter_topic
        self.max_delivery_attempts = max_delivery_attempts
        self.retry_backoff_s = retry_backoff_s
        self._cond = threading.Condition()
        self._logs: dict[str, list[_Record]] = {}
        self._groups: dict[str, _Group] = {}
        self._subs: list[MemorySubscription] = []
        self._seq = 0
        self._closed = False

    @classmethod
    def from_settings(cls, settings: BusSettings) -> MemoryEventBus:
        return cls(settings.dead_letter_topic, settings.max_delivery_attempts)

    # --- producing -----------------------------------------------------------------

    def publish(self, topic: str, event: EventEnvelope, key: str | None = None) -> None:
        # The stored event carries the send span's traceparent (see send_span).
        with send_span(topic, event, system=MESSAGING_SYSTEM) as sent:
            payload = sent.model_dump_json()
            with self._cond:
                if self._closed:
                    raise Unavailable("event bus is closed", code="bus_unavailable")
                self._seq += 1
                self._logs.setdefault(topic, []).append(
                    _Record(self._seq, key if key is not None else event.key, payload)
                )
                self._cond.notify_all()
        EVENTS_PUBLISHED.labels(topic).inc()

    # --- consuming -----------------------------------------------------------------

    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> MemorySubscription:
        if not topics:
            raise ValueError("subscribe needs at least one topic")
        with self._cond:
            if self._closed:
                raise Unavailable("event bus is closed", code="bus_unavailable")
            sub = MemorySubscription(self, group, tuple(dict.fromkeys(topics)), handler)
            self._subs.append(sub)
            self._groups.setdefault(group, _Group())
            self._claim(sub)
        sub.start()
        return sub

    def _claim(self, sub: MemorySubscription) -> None:
        """Gives ``sub`` the topics of its group that no live subscription owns. Holds _cond."""
        g = self._groups[sub.group]
        for topic in sub.topics:
            if topic not in g.owners:
                g.owners[topic] = sub

    def _release(self, sub: MemorySubscription) -> None:
        with self._cond:
            g = self._groups.get(sub.group)
            if g is not None:
                for topic, owner in list(g.owners.items()):
                    if owner is sub:
                        del g.owners[topic]
            if sub in self._subs:
                self._subs.remove(sub)
            for other in self._subs:  # a standby of the same group takes over
                if other.group == sub.group:
                    self._claim(other)
            self._cond.notify_all()

    def _next(self, sub: MemorySubscription) -> tuple[str, int, _Record] | None:
        """The oldest unhandled event among the topics ``sub`` owns. Holds _cond."""
        g = self._groups[sub.group]
        best: tuple[str, int, _Record] | None = None
        for topic in sub.topics:
            if g.owners.get(topic) is not sub:
                continue
            records = self._logs.get(topic, [])
            offset = g.offsets.get(topic, 0)
            if offset < len(records) and (best is None or records[offset].seq < best[2].seq):
                best = (topic, offset, records[offset])
        return best

    def _commit(self, sub: MemorySubscription, topic: str, offset: int) -> None:
        with self._cond:
            g = self._groups[sub.group]
            # A member that lost the topic (closed while its handler ran) must not
            # move the new owner's offset: that would skip an event.
            if g.owners.get(topic) is sub and g.offsets.get(topic, 0) == offset:
                g.offsets[topic] = offset + 1
            self._cond.notify_all()

    def _dead_letter(
        self, sub: MemorySubscription, topic: str, record: _Record, error: BaseException
    ) -> None:
        if topic == self.dead_letter_topic:
            # Re-queueing a dead letter that failed again would loop forever.
            log.error(
                "group %s failed on dead letter %s, giving up: %r", sub.group, record.key, error
            )
            return
        original = EventEnvelope.model_validate_json(record.payload)
        letter = EventEnvelope(
            source="memgrid.bus",
            type=DEAD_LETTER_TYPE,
            subject=original.subject,
            tenant=original.tenant,
            namespace=original.namespace,
            traceparent=original.traceparent,
            data={
                "topic": topic,
                "group": sub.group,
                "key": record.key,
                "error": f"{type(error).__name__}: {error}",
                "attempts": self.max_delivery_attempts,
                "event": original.model_dump(mode="json"),
            },
        )
        log.error(
            "group %s gave up on %s event %s after %d attempts: %r",
            sub.group,
            topic,
            original.id,
            self.max_delivery_attempts,
            error,
        )
        self.publish(self.dead_letter_topic, letter, key=record.key)

    # --- lifecycle -----------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> None:
        """Waits until every running subscription has handled everything in its topics,
        including events published meanwhile (dead letters, events that handlers
        publish). Raises TimeoutError if that does not happen within ``timeout_s``.
        A dispatcher thread calling flush does not wait for its own subscription."""
        deadline = time.monotonic() + timeout_s
        me = threading.current_thread()
        with self._cond:
            while True:
                behind = self._behind(exclude=me)
                if not behind:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"event bus flush timed out; still behind: {behind}")
                self._cond.wait(left)

    def _behind(self, exclude: threading.Thread) -> list[str]:
        behind = []
        for name, g in self._groups.items():
            for topic, owner in g.owners.items():
                if owner.thread is exclude:
                    continue
                if g.offsets.get(topic, 0) < len(self._logs.get(topic, [])):
                    behind.append(f"{name}/{topic}")
        return behind

    def close(self) -> None:
        with self._cond:
            self._closed = True
            subs = list(self._subs)
            self._cond.notify_all()
        for sub in subs:
            sub.close()


class MemorySubscription:
    def __init__(
        self, bus: MemoryEventBus, group: str, topics: tuple[str, ...], handler: Handler
    ) -> None:
        self.group = group
        self.topics = topics
        self._bus = bus
        self._handler = handler
        self._stop = False
        self.thread = threading.Thread(target=self._run, name=f"bus-{group}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        bus = self._bus
        while True:
            with bus._cond:
                while not self._stop and (item := bus._next(self)) is None:
                    bus._cond.wait()
                if self._stop:
                    return
            assert item is not None
            topic, offset, record = item
            if self._deliver(topic, record):
                bus._commit(self, topic, offset)
            else:
                return  # stopped while retrying; the event stays for the next owner

    def _deliver(self, topic: str, record: _Record) -> bool:
        """Runs the handler with retries; False only when stopped before it was done."""
        with process_span(
            topic,
            EventEnvelope.model_validate_json(record.payload),
            group=self.group,
            system=MESSAGING_SYSTEM,
        ) as span:
            done = self._attempts(topic, record, span)
        if done:
            EVENTS_CONSUMED.labels(self.group, topic).inc()
        return done

    def _attempts(self, topic: str, record: _Record, span: Span) -> bool:
        bus = self._bus
        error: BaseException | None = None
        for attempt in range(1, bus.max_delivery_attempts + 1):
            if self._stop:
                return False
            try:
                self._handler(EventEnvelope.model_validate_json(record.payload))
                return True
            except Exception as exc:  # a handler's failure must not kill the dispatcher
                error = exc
                span.record_exception(exc)
                HANDLER_FAILURES.labels(self.group, topic).inc()
                log.warning(
                    "group %s: handler failed on %s (attempt %d/%d): %r",
                    self.group,
                    topic,
                    attempt,
                    bus.max_delivery_attempts,
                    exc,
                )
                if attempt < bus.max_delivery_attempts:
                    time.sleep(min(bus.retry_backoff_s * 2 ** (attempt - 1), 1.0))
        assert error is not None
        mark_error(span, error)
        try:
            bus._dead_letter(self, topic, record, error)
        except Unavailable:
            return False  # bus closing: leave the event unacknowledged
        DEAD_LETTERED.labels(self.group, topic).inc()
        return True

    def close(self) -> None:
        with self._bus._cond:
            self._stop = True
            self._bus._cond.notify_all()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(timeout=10.0)
        self._bus._release(self)
