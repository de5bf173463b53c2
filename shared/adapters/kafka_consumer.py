"""The consuming side of the Kafka EventBus: one KafkaConsumer per subscription.

Split from bus_kafka.py, which owns the producer, topics and the bus itself; the
delivery contract (commit after the handler, retries, dead letters) is written
there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry.trace import Span
from pydantic import ValidationError

from shared.errors import Unavailable
from shared.metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_FAILURES, record_lag
from shared.ports.bus import Handler
from shared.schemas.events import EventEnvelope
from shared.telemetry import mark_error, process_span

if TYPE_CHECKING:
    from shared.adapters.bus_kafka import KafkaEventBus

log = logging.getLogger("shared.adapters.bus_kafka")

POLL_TIMEOUT_MS = 100
# The lag gauge is refreshed after a poll at most this often. It costs no broker
# request (highwater and position come with the fetches), only label lookups.
LAG_REFRESH_S = 1.0


def _kick_stalled_join(consumer: KafkaConsumer) -> None:
    """Works around a kafka-python 3.0 (3.0.12) rebalance bug.

    ``poll(timeout_ms)`` gives up waiting when a JoinGroup/SyncGroup round takes
    longer than the poll timeout and leaves the round in flight, to be awaited
    by the next poll. But the next poll only awaits it while ``need_rejoin()``
    is true, and for a rebalance that the group leader started because its
    metadata changed, performing the assignment already made that false: the
    round completes unobserved, the member never applies its assignment and
    sits in the group owning partitions it does not read. Asking for a rejoin
    makes the next poll await (or redo) the round. Harmless when the private
    attributes differ in another kafka-python version: then it does nothing.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if task is not None and coordinator is not None and not coordinator.need_rejoin():
        log.info("group %s: re-awaiting a rebalance left in flight", coordinator.group_id)
        coordinator.request_rejoin()


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's network loop, so it only records state: anything
    blocking here would stall heartbeats. Offsets need no commit on revocation:
    the consumer thread commits every handled batch before it polls again."""

    def __init__(self, sub: KafkaSubscription) -> None:
        self.sub = sub

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.debug("group %s: revoked %s", self.sub.group, revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.debug("group %s: assigned %s", self.sub.group, assigned)
        self.sub._ready.set()


class KafkaSubscription:
    """One consumer in one group, on its own thread (KafkaConsumer is not thread-safe:
    after construction only that thread touches it)."""

    def __init__(
        self, bus: KafkaEventBus, group: str, topics: tuple[str, ...], handler: Handler
    ) -> None:
        self.group = group
        self.topics = topics
        self._bus = bus
        self._handler = handler
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._lag_due = 0.0
        # Next offset to handle per partition, from the batches handled here
        # (KafkaConsumer.position may block on the coordinator; this cannot).
        self._positions: dict[tuple[str, int], int] = {}
        self._consumer = bus._consumer(group, f"{bus.settings.client_id}-{group}")
        try:
            self._consumer.subscribe(list(topics), listener=_Listener(self))
            # Load the topics' metadata before the first join. Otherwise the
            # leader assigns from a stale metadata snapshot and rejoins as soon
            # as the snapshot changes: a second rebalance, which kafka-python
            # 3.0 can also lose (see _kick_stalled_join).
            for topic in topics:
                self._consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            self._consumer.close(autocommit=False)
            raise Unavailable(f"cannot subscribe group {group}: {exc}", "bus_unavailable") from exc
        self.thread = threading.Thread(target=self._run, name=f"kafka-{group}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the group assigned this member its partitions (possibly none)."""
        return self._ready.wait(timeout_s)

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
                    _kick_stalled_join(consumer)
                except KafkaError as exc:
                    # Broker restarts and rebalances surface here; the consumer
                    # reconnects by itself on the next poll.
                    log.warning("group %s: poll failed: %s", self.group, exc)
                    self._stop.wait(0.5)
                    continue
                handled: dict[TopicPartition, int] = {}
                stopped = False
                for tp, records in batch.items():
                    for record in records:
                        if not self._process(record):
                            stopped = True
                            break
                        handled[tp] = record.offset + 1
                    if stopped:
                        break
                if handled:
                    self._commit(handled)
                    self._positions.update(
                        {(tp.topic, tp.partition): o for tp, o in handled.items()}
                    )
                if stopped:
                    return
                self._refresh_lag()
        except BaseException as exc:  # keep the reason: the thread must not die silently
            self.error = exc
            log.exception("group %s: consumer thread failed", self.group)
        finally:
            self._ready.set()  # never leave subscribe waiting on a dead thread
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                log.warning("group %s: consumer close: %s", self.group, exc)
            self._bus._remove(self)

    def _commit(self, handled: dict[TopicPartition, int]) -> None:
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in handled.items()}
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # Typically a rebalance took the partitions: their new owner resumes
            # from the last commit and redelivers these records (at least once).
            log.warning("group %s: commit failed, records will be redelivered: %s", self.group, exc)

    def _refresh_lag(self) -> None:
        """Sets the group's lag gauge: highwater (from the last fetch) minus the
        next offset to handle, for the assigned partitions this member handled."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_REFRESH_S
        ends: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment() or ():
                end = self._consumer.highwater(tp)
                if end is not None:
                    ends[(tp.topic, tp.partition)] = end
        except KafkaError as exc:  # metrics are best effort; consuming goes on
            log.debug("group %s: no lag sample: %s", self.group, exc)
            return
        record_lag(self.group, ends, self._positions)

    def _process(self, record: Any) -> bool:
        """Hands ``record`` to the handler with retries, or dead-letters it.
        False only when stopped before it was done (its offset is not committed)."""
        try:
            event = EventEnvelope.model_validate_json(record.value)
        except (ValidationError, ValueError, TypeError) as exc:  # TypeError: a null value
            done = self._give_up(record, exc, 0, None)
        else:
            with process_span(
                record.topic,
                event,
                group=self.group,
                partition=record.partition,
                offset=record.offset,
            ) as span:
                done = self._attempts(record, span)
        if done:
            EVENTS_CONSUMED.labels(self.group, record.topic).inc()
        return done

    def _attempts(self, record: Any, span: Span) -> bool:
        bus = self._bus
        error: BaseException | None = None
        for attempt in range(1, bus.max_delivery_attempts + 1):
            if self._stop.is_set():
                return False
            try:
                # A fresh copy per attempt: a handler that mutated the event and
                # then failed must not see its own changes on the retry.
                self._handler(EventEnvelope.model_validate_json(record.value))
                return True
            except Exception as exc:  # a handler's failure must not kill the consumer
                error = exc
                span.record_exception(exc)
                HANDLER_FAILURES.labels(self.group, record.topic).inc()
                log.warning(
                    "group %s: handler failed on %s[%d]@%d (attempt %d/%d): %r",
                    self.group,
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    bus.max_delivery_attempts,
                    exc,
                )
                if attempt < bus.max_delivery_attempts:
                    self._stop.wait(min(bus.settings.retry_backoff_s * 2 ** (attempt - 1), 30.0))
        assert error is not None
        mark_error(span, error)
        return self._give_up(
            record,
            error,
            bus.max_delivery_attempts,
            EventEnvelope.model_validate_json(record.value),
        )

    def _give_up(
        self, record: Any, error: BaseException, attempts: int, event: EventEnvelope | None
    ) -> bool:
        bus = self._bus
        if record.topic == bus.dead_letter_topic:
            # Re-queueing a dead letter that failed again would loop forever.
            log.error(
                "group %s failed on dead letter %s[%d]@%d, skipping it: %r",
                self.group,
                record.topic,
                record.partition,
                record.offset,
                error,
            )
            return True
        pause = 0.5
        while not self._stop.is_set():
            try:
                bus._dead_letter(self, record, error, attempts, event)
                DEAD_LETTERED.labels(self.group, record.topic).inc()
                return True
            except Unavailable as exc:
                # The record stays uncommitted until its dead letter is stored.
                log.warning("group %s: cannot publish dead letter yet: %s", self.group, exc)
                if bus._closed:
                    return False
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
        return False

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(timeout=30.0)
            if self.thread.is_alive():
                log.warning("group %s: consumer thread did not stop in 30 s", self.group)
        self._bus._remove(self)
