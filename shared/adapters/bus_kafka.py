"""EventBus on Apache Kafka: ``kafka://host:port[,host:port]`` (distributed mode).

Producing: one idempotent producer per bus (``acks=all``,
``enable_idempotence=True``: retries after a lost ack write no duplicates and
keep per-partition order). ``publish`` waits for the broker's ack, so a return
means the event is on every in-sync replica; any failure is
shared.errors.Unavailable, which the vault's outbox relay answers by retrying,
and replaces the producer (see ``_discard_producer``: a kafka-python bug).
The record key is the event key (the cube id), the value the CloudEvents
envelope as JSON (structured mode), and headers repeat ``ce_type``, ``ce_id``
and ``traceparent`` so that routers and tracers need not parse the body.

Consuming: each ``subscribe`` runs one KafkaConsumer in its own thread, in the
named consumer group, with auto-commit off. Offsets are committed only after
the handler returned for every record below them (at least once: a crash
before the commit redelivers, never skips). A handler that raises is retried
``max_delivery_attempts`` times with a doubling pause, then the event goes to
the dead-letter topic with the error, the original topic, partition, offset
and group (shared.topics.DeadLetter), and only then is its offset committed. A
record that is not a valid envelope goes to the dead-letter topic at once:
retrying cannot fix it. A new group starts at the earliest retained offset,
like the in-process bus, so a subscriber that starts after the producer sees
everything.

Topics: the declared ones (shared.topics) are created on start; any other topic
is created on first use with ``default_partitions``, so publishing never depends
on the broker's auto-create setting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from shared.adapters.kafka_consumer import KafkaSubscription
from shared.errors import ConfigError, Unavailable
from shared.metrics import EVENTS_PUBLISHED
from shared.ports.bus import Handler
from shared.schemas.events import EventEnvelope
from shared.settings import BusSettings
from shared.telemetry import send_span
from shared.topics import TopicSpec, ensure_topics, make_dead_letter, spec_for, topic_specs

log = logging.getLogger(__name__)

CONTENT_TYPE = b"application/cloudevents+json"
# Broker waits at most this long for data before answering a fetch: bounds the
# latency of an idle consumer without spinning.
FETCH_MAX_WAIT_MS = 100
# Records per poll: a batch is committed once all of it is handled, so this
# bounds both redelivery after a crash and the time between polls.
MAX_POLL_RECORDS = 200


def bootstrap_servers(url: str) -> list[str]:
    """``kafka://h1:9092,h2:9092`` → ``["h1:9092", "h2:9092"]`` (port defaults to 9092)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "kafka" or not sep:
        raise ConfigError(f"not a kafka URL (kafka://host:port[,host:port]): {url!r}")
    hosts = rest.split("/", 1)[0]
    servers = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = port, "9092"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad broker address {part!r} in {url!r}")
        servers.append(f"{host}:{port}")
    return servers


def _headers(event: EventEnvelope) -> list[tuple[str, bytes]]:
    headers = [
        ("content-type", CONTENT_TYPE),
        ("ce_specversion", event.specversion.encode()),
        ("ce_type", event.type.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
    ]
    if event.traceparent:
        headers.append(("traceparent", event.traceparent.encode()))
    return headers


class KafkaEventBus:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.dead_letter_topic = settings.dead_letter_topic
        self.max_delivery_attempts = settings.max_delivery_attempts
        self.servers = bootstrap_servers(settings.url)
        self._cond = threading.Condition()
        self._admin_lock = threading.Lock()
        self._producer_lock = threading.Lock()
        self._subs: list[KafkaSubscription] = []
        self._known_topics: set[str] = set()
        self._published = 0  # events acknowledged so far: flush notices new ones
        self._closed = False
        timeout_ms = int(settings.publish_timeout_s * 1000)
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.servers,
                client_id=f"{settings.client_id}-admin",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
            try:
                self._ensure(topic_specs(settings))
                self._producer: KafkaProducer | None = self._new_producer()
            except BaseException:
                self._admin.close()
                raise
        except KafkaError as exc:
            raise Unavailable(
                f"kafka at {','.join(self.servers)} is unreachable: {exc}", code="bus_unavailable"
            ) from exc

    @classmethod
    def from_settings(cls, settings: BusSettings) -> KafkaEventBus:
        return cls(settings)

    def _new_producer(self) -> KafkaProducer:
        timeout_ms = int(self.settings.publish_timeout_s * 1000)
        return KafkaProducer(
            bootstrap_servers=self.servers,
            client_id=self.settings.client_id,
            acks="all",
            enable_idempotence=True,
            # An event the broker has not acked within this bound is reported
            # as failed (Unavailable) rather than retried forever.
            delivery_timeout_ms=timeout_ms,
            request_timeout_ms=min(timeout_ms, 30_000),
            max_block_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )

    def _current_producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = self._new_producer()  # KafkaError: still unreachable
            return self._producer

    def _discard_producer(self, producer: KafkaProducer) -> None:
        """Replaces a producer that failed to deliver with a fresh one (on next use).

        kafka-python 3.0.12's idempotent producer never recovers once a batch
        that was already sent expires (e.g. the broker was down longer than
        the delivery timeout): it drops its producer id but never asks for a
        new one, and every later send times out. A new producer gets a new id.
        Events whose publish failed were reported Unavailable, so the caller
        retries them; a retry may duplicate one the broker did store, which at
        least once delivery allows (consumers dedupe on the event id)."""
        with self._producer_lock:
            ours = self._producer is producer  # else another thread already replaced it
            if ours:
                self._producer = None
        if not ours:
            return
        try:
            producer.close(timeout=0)
        except Exception as exc:  # it is being thrown away; nothing else to do
            log.debug("closing a failed producer: %s", exc)

    # --- topics --------------------------------------------------------------------

    def _ensure(self, specs: Sequence[TopicSpec]) -> None:
        todo = [s for s in specs if s.name not in self._known_topics]
        if not todo:
            return
        with self._admin_lock:
            ensure_topics(
                self._admin,
                todo,
                replication_factor=self.settings.replication_factor,
                timeout_ms=int(self.settings.publish_timeout_s * 1000),
            )
            self._known_topics.update(s.name for s in todo)

    def _ensure_topics(self, topics: Sequence[str]) -> None:
        specs = [
            spec_for(t, self.settings)
            or TopicSpec(t, self.settings.default_partitions, -1, False, "undeclared topic")
            for t in topics
            if t not in self._known_topics
        ]
        try:
            self._ensure(specs)
        except KafkaError as exc:
            raise Unavailable(f"cannot create topics {topics}: {exc}", "bus_unavailable") from exc

    # --- producing -----------------------------------------------------------------

    def publish(self, topic: str, event: EventEnvelope, key: str | None = None) -> None:
        if self._closed:
            raise Unavailable("event bus is closed", code="bus_unavailable")
        self._ensure_topics([topic])
        record_key = (key if key is not None else event.key).encode()
        try:
            producer = self._current_producer()
        except KafkaError as exc:
            raise Unavailable(f"kafka is unreachable: {exc}", "bus_unavailable") from exc
        # What goes on the wire (body and header) is the send span's traceparent.
        with send_span(topic, event) as sent:
            value = sent.model_dump_json().encode()
            try:
                future = producer.send(topic, value=value, key=record_key, headers=_headers(sent))
                future.get(timeout=self.settings.publish_timeout_s)
            except (KafkaError, AssertionError) as exc:
                # AssertionError: kafka-python asserts the producer is not closed.
                self._discard_producer(producer)
                raise Unavailable(
                    f"kafka did not acknowledge {topic} event {event.id}: {exc}", "bus_unavailable"
                ) from exc
        EVENTS_PUBLISHED.labels(topic).inc()
        with self._cond:
            self._published += 1
            self._cond.notify_all()

    # --- consuming -----------------------------------------------------------------

    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> KafkaSubscription:
        if not topics:
            raise ValueError("subscribe needs at least one topic")
        if self._closed:
            raise Unavailable("event bus is closed", code="bus_unavailable")
        topics = tuple(dict.fromkeys(topics))
        self._ensure_topics(topics)
        sub = KafkaSubscription(self, group, topics, handler)
        with self._cond:
            self._subs.append(sub)
        sub.start()
        if not sub.wait_ready(self.settings.join_timeout_s):
            # Not fatal: the consumer keeps trying, and flush waits for it.
            log.warning("group %s has not been assigned %s yet", group, ", ".join(topics))
        if sub.error is not None:
            raise Unavailable(f"group {group} failed: {sub.error}", "bus_unavailable")
        return sub

    def _consumer(self, group: str, client_id: str) -> KafkaConsumer:
        s = self.settings
        session_ms = int(s.session_timeout_s * 1000)
        try:
            return KafkaConsumer(
                bootstrap_servers=self.servers,
                client_id=client_id,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                max_poll_records=MAX_POLL_RECORDS,
                session_timeout_ms=session_ms,
                # A third of the session at most, as Kafka recommends; more often
                # makes a closed member's partitions move faster.
                heartbeat_interval_ms=max(100, session_ms // 5),
                max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
                bootstrap_timeout_ms=int(s.publish_timeout_s * 1000),
            )
        except KafkaError as exc:
            raise Unavailable(
                f"cannot join consumer group {group}: {exc}", "bus_unavailable"
            ) from exc

    def _dead_letter(
        self,
        sub: KafkaSubscription,
        record: Any,
        error: BaseException,
        attempts: int,
        event: EventEnvelope | None,
    ) -> None:
        """Publishes the dead letter for ``record``; raises Unavailable if Kafka refuses."""
        key = record.key.decode(errors="replace") if record.key is not None else None
        letter = make_dead_letter(
            topic=record.topic,
            group=sub.group,
            key=key,
            error=error,
            attempts=attempts,
            event=event,
            raw=record.value if event is None else None,
            partition=record.partition,
            offset=record.offset,
        )
        log.error(
            "group %s gave up on %s[%d]@%d after %d attempts: %r",
            sub.group,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            error,
        )
        self.publish(self.dead_letter_topic, letter, key=key)

    def _group_lag(
        self,
        groups: dict[str, set[str]],
        ends: dict[TopicPartition, int],
        starts: dict[TopicPartition, int],
    ) -> list[str]:
        """``group/topic[partition]`` for every partition a group has not committed
        up to ``ends``; a partition without a commit starts at ``starts``."""
        with self._admin_lock:
            committed = self._admin.list_group_offsets({g: None for g in groups})
        behind = []
        for group, topics in groups.items():
            offsets = committed.get(group) or {}
            for tp, end in ends.items():
                if tp.topic not in topics:
                    continue
                c = offsets.get(tp)
                position = c.offset if c is not None and c.offset >= 0 else starts[tp]
                if position < end:
                    behind.append(f"{group}/{tp.topic}[{tp.partition}]")
        return behind

    def _log_bounds(
        self, topics: set[str]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(end offsets, start offsets) of every partition of ``topics``."""
        from kafka.admin import OffsetSpec

        with self._admin_lock:
            described = self._admin.describe_topics(sorted(topics))
            tps = [
                TopicPartition(t["name"], p["partition_index"])
                for t in described
                for p in t.get("partitions") or []
            ]
            if not tps:
                return {}, {}
            latest = self._admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
            earliest = self._admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST))
        return (
            {tp: r.offset for tp, r in latest.items()},
            {tp: r.offset for tp, r in earliest.items()},
        )

    # --- lifecycle -----------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> None:
        """Waits until the broker acknowledged every event sent so far, and every
        consumer group with a running subscription on this bus has committed
        everything up to the end of its topics, including events published
        meanwhile through this bus (dead letters, events that handlers publish).

        Progress is read from the group's committed offsets, not from this
        process's consumers, so a group member in another process counts too and
        a rebalance in flight cannot make flush return early. Raises TimeoutError
        if that does not happen within ``timeout_s``. A consumer thread calling
        flush does not wait for its own subscription."""
        deadline = time.monotonic() + timeout_s
        me = threading.current_thread()
        producer = self._producer
        if not self._closed and producer is not None:
            try:
                producer.flush(timeout=timeout_s)
            except KafkaError as exc:
                raise TimeoutError(f"kafka producer flush: {exc}") from exc
        seen = -1
        bounded: set[str] = set()  # topics whose log ends were read
        ends: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}
        while True:
            with self._cond:
                groups: dict[str, set[str]] = {}
                for sub in self._subs:
                    if sub.thread is not me:
                        groups.setdefault(sub.group, set()).update(sub.topics)
                published = self._published
            if not groups:
                return
            topics: set[str] = set().union(*groups.values())
            try:
                # (Re)read the log ends when events were published since, or a
                # subscription to another topic started meanwhile.
                if published != seen or not topics <= bounded:
                    ends, starts = self._log_bounds(topics)
                    seen, bounded = published, topics
                behind = self._group_lag(groups, ends, starts)
            except KafkaError as exc:
                behind = [f"kafka: {exc}"]
            if not behind:
                with self._cond:
                    if self._published == seen:
                        return
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"event bus flush timed out; still behind: {behind}")
            with self._cond:
                if self._published == seen:
                    self._cond.wait(min(left, 0.05))

    def _remove(self, sub: KafkaSubscription) -> None:
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            sub.close()
        with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=self.settings.publish_timeout_s)
            except KafkaError as exc:
                log.warning("kafka producer flush on close: %s", exc)
            producer.close(timeout=self.settings.publish_timeout_s)
        with self._admin_lock:
            self._admin.close()


__all__ = ["KafkaEventBus", "KafkaSubscription", "bootstrap_servers"]
