"""Faust stream processors on memgrid's Kafka (the scheduler and governance use them).

``make_faust_app`` builds a faust.App wired to ``settings.bus``: the same
brokers as KafkaEventBus, in-memory table store, no web server unless a port is
given, and ``topic_allow_declare=False`` because every topic is declared once
in shared.topics and created by ``ensure_faust_topics`` (never by faust with
faust's defaults: 8 partitions, no retention).

``event_topic`` declares the faust topic of a memgrid topic with its declared
partitions and raw (bytes) values; ``envelopes`` turns such a stream into
EventEnvelopes, and ``handle_events`` runs an async handler over it with the
bus's delivery contract (retries, then the dead-letter topic; the offset is
acked only once the event was handled or dead-lettered). A message that is not
a valid envelope is dead-lettered at once, as on the bus.

Usage, in a service::

    app = make_faust_app("memgrid-scheduler", settings)
    accessed = event_topic(app, MEMORY_ACCESSED.name, settings.bus)

    @app.agent(accessed)
    async def track(stream):
        await handle_events(stream, on_accessed, app=app, settings=settings)

    ensure_faust_topics(app, settings)  # after tables are defined
    app.main()  # or faust.Worker(app).execute_from_commandline()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
from pydantic import ValidationError

from shared.errors import ConfigError
from shared.metrics import (
    DEAD_LETTERED,
    EVENTS_CONSUMED,
    HANDLER_FAILURES,
    record_lag,
    render,
)
from shared.registry import scheme_of
from shared.schemas.events import EventEnvelope
from shared.settings import BusSettings, Settings
from shared.telemetry import process_span, setup_tracing, tracing_enabled
from shared.topics import (
    TopicSpec,
    create_missing_topics,
    make_dead_letter,
    spec_for,
    topic_specs,
)

log = logging.getLogger(__name__)

EventHandler = Callable[[EventEnvelope], Awaitable[None]]


def faust_brokers(bus: BusSettings) -> list[str]:
    """``kafka://h1:9092,h2:9092`` → ``["kafka://h1:9092", "kafka://h2:9092"]``."""
    from shared.adapters.bus_kafka import bootstrap_servers

    if scheme_of(bus.url) != "kafka":
        raise ConfigError(f"faust stream processors need a kafka:// bus, not {bus.url!r}")
    return [f"kafka://{server}" for server in bootstrap_servers(bus.url)]


def make_faust_app(
    app_id: str, settings: Settings, *, web_port: int | None = None, **overrides: Any
) -> faust.App:
    """A faust.App for ``app_id`` (also its consumer group) on ``settings.bus``.

    ``web_port`` None disables faust's web server (stats, table views); give a
    port to enable it on ``settings.host``. ``overrides`` are passed to faust
    as they are (e.g. ``topic_partitions`` for tables, ``stream_buffer_maxsize``).
    """
    bus = settings.bus
    datadir = settings.data_dir / "faust" / app_id
    # faust creates datadir itself, but not its parents.
    datadir.parent.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        "broker": faust_brokers(bus),
        "broker_client_id": f"{bus.client_id}-{app_id}",
        "store": "memory://",
        "autodiscover": False,
        # Topics are declared by shared.topics (ensure_faust_topics), never
        # created by faust with its own defaults.
        "topic_allow_declare": False,
        "topic_partitions": bus.default_partitions,
        "topic_replication_factor": max(bus.replication_factor, 1),
        "consumer_auto_offset_reset": "earliest",  # a new processor sees history
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,  # as the bus: on every in-sync replica
        "broker_session_timeout": bus.session_timeout_s,
        "broker_heartbeat_interval": max(bus.session_timeout_s / 5, 0.1),
        # faust writes table metadata under datadir even with the memory store;
        # keep it in the data directory instead of the working directory.
        "datadir": str(datadir),
        "web_enabled": web_port is not None,
        "web_port": web_port or 6066,
        "web_host": settings.host,
        "web_bind": settings.host,
    }
    conf.update(overrides)
    return faust.App(app_id, **conf)


def faust_topic(app: faust.App, spec: TopicSpec) -> Any:
    """The faust topic for ``spec``: raw bytes keys and values (see ``envelopes``)."""
    return app.topic(
        spec.name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        retention=spec.retention_ms / 1000 if spec.retention_ms > 0 else None,
        compacting=spec.compacted,
        deleting=not spec.compacted or spec.retention_ms > 0,
    )


def event_topic(app: faust.App, name: str, bus: BusSettings | None = None) -> Any:
    """The faust topic of the declared memgrid topic ``name`` (ConfigError otherwise)."""
    spec = spec_for(name, bus)
    if spec is None:
        raise ConfigError(f"{name!r} is not a topic declared in shared.topics")
    return faust_topic(app, spec)


def envelope_headers(event: EventEnvelope) -> list[tuple[str, bytes]]:
    """The Kafka headers KafkaEventBus puts on ``event`` (content type, ``ce_*``,
    traceparent), for a stream processor that publishes events itself."""
    from shared.adapters.bus_kafka import _headers  # the one definition of them

    return _headers(event)


def internal_specs(app: faust.App) -> list[TopicSpec]:
    """Specs of the topics faust itself needs for ``app``: the leader-election topic
    and one compacted changelog per table (as many partitions as the table)."""
    specs = []
    if not app.conf.topic_disable_leader:
        specs.append(
            TopicSpec(f"{app.conf.id}-__assignor-__leader", 1, -1, False, "faust internal")
        )
    for table in app.tables.values():
        window = getattr(table, "window", None)
        retention_ms = int(window.expires * 1000) if window is not None else -1
        specs.append(
            TopicSpec(
                table.changelog_topic.get_topic_name(),
                table.partitions or app.conf.topic_partitions,
                retention_ms,
                True,
                "the table's key",
                f"changelog of faust table {table.name}",
            )
        )
    return specs


def ensure_faust_topics(app: faust.App, settings: Settings) -> list[str]:
    """Creates memgrid's declared topics and ``app``'s internal ones if missing.

    Call it after the app's tables are defined and before the worker starts;
    a stream processor may be the first service up, so it does not rely on the
    bus having created the event topics. Returns the names it created."""
    specs = [*topic_specs(settings.bus), *internal_specs(app)]
    return create_missing_topics(settings.bus, specs, client="topics")


async def envelopes(
    stream: Any, *, dead_letter: Any, group: str
) -> AsyncIterator[tuple[Any, EventEnvelope]]:
    """``(faust event, envelope)`` for each message of ``stream``; a message that is
    not a valid envelope is sent to ``dead_letter`` (a faust topic) and skipped.

    faust acknowledges a message when the stream moves past it, so a message is
    acked only after the caller finished with the pair it got."""
    async for event in stream.events():
        try:
            envelope = EventEnvelope.model_validate_json(event.value)
        except (ValidationError, ValueError, TypeError) as exc:
            await _dead_letter(dead_letter, event, group, exc, 0, None)
            continue
        yield event, envelope


async def handle_events(
    stream: Any,
    handler: EventHandler,
    *,
    app: faust.App,
    settings: Settings,
    dead_letter: Any | None = None,
) -> None:
    """Runs ``handler`` on every envelope of ``stream`` with the bus's contract:
    retried up to ``bus.max_delivery_attempts`` times with a doubling pause,
    then sent to the dead-letter topic with the error; the message is acked
    only after that. Runs until the stream ends (worker shutdown)."""
    bus = settings.bus
    group = app.conf.id
    dlq = dead_letter if dead_letter is not None else event_topic(app, bus.dead_letter_topic, bus)
    async for event, envelope in envelopes(stream, dead_letter=dlq, group=group):
        with traced_event(event, envelope, group):
            await _attempts(handler, event, envelope, dlq, group, bus)
        EVENTS_CONSUMED.labels(group, event.message.topic).inc()


async def _attempts(
    handler: EventHandler,
    event: Any,
    envelope: EventEnvelope,
    dlq: Any,
    group: str,
    bus: BusSettings,
) -> None:
    for attempt in range(1, bus.max_delivery_attempts + 1):
        try:
            # A fresh copy per attempt: a failed attempt's changes must not leak.
            await handler(envelope.model_copy(deep=True))
            return
        except Exception as exc:  # a handler's failure must not stop the agent
            HANDLER_FAILURES.labels(group, event.message.topic).inc()
            log.warning(
                "%s: handler failed on %s (attempt %d/%d): %r",
                group,
                envelope.id,
                attempt,
                bus.max_delivery_attempts,
                exc,
            )
            if attempt == bus.max_delivery_attempts:
                await _dead_letter(dlq, event, group, exc, attempt, envelope)
            else:
                await asyncio.sleep(min(bus.retry_backoff_s * 2 ** (attempt - 1), 30.0))


@contextmanager
def traced_event(event: Any, envelope: EventEnvelope, group: str) -> Iterator[None]:
    """A ``process <topic>`` span (child of the producer's) around handling one
    faust ``event`` in ``group``, when tracing exports spans; otherwise nothing,
    as this runs per event on a stream processor's hot path."""
    if not tracing_enabled():
        yield
        return
    msg = event.message
    with process_span(msg.topic, envelope, group=group, partition=msg.partition, offset=msg.offset):
        yield


def add_observability(app: faust.App, settings: Settings, service: str) -> None:
    """Tracing for the process (shared.telemetry, as ``service``), ``GET /metrics``
    on the app's web server (shared.metrics) and a timer that sets the app's
    consumer lag gauge every ``telemetry.lag_interval_s``."""
    setup_tracing(settings.telemetry, service)
    group = app.conf.id

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body, content_type = render()
        # aiohttp refuses a content_type argument that carries parameters.
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.timer(settings.telemetry.lag_interval_s, name="consumer_lag")
    async def sample_lag() -> None:
        await sample_faust_lag(app.consumer, group)


async def sample_faust_lag(consumer: Any, group: str) -> dict[tuple[str, int], int]:
    """Sets ``memgrid_consumer_lag`` for the partitions ``consumer`` (a faust
    Consumer) is assigned: highwater (known from its fetches) minus position."""
    ends: dict[tuple[str, int], int] = {}
    positions: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        try:
            end = consumer.highwater(tp)
            position = await consumer.position(tp)
        except Exception as exc:  # partitions moving; the next round samples again
            log.debug("%s: no lag sample for %s: %s", group, tp, exc)
            continue
        if end is not None and position is not None:
            ends[(tp.topic, tp.partition)] = end
            positions[(tp.topic, tp.partition)] = position
    return record_lag(group, ends, positions)


def dead_letter_of(
    event: Any,
    group: str,
    error: BaseException,
    attempts: int,
    envelope: EventEnvelope | None,
) -> EventEnvelope:
    """The dead letter of faust ``event``: its envelope, or its raw bytes if it had none."""
    message = event.message
    return make_dead_letter(
        topic=message.topic,
        group=group,
        key=message.key.decode(errors="replace") if isinstance(message.key, bytes) else None,
        error=error,
        attempts=attempts,
        event=envelope,
        raw=event.value if envelope is None and isinstance(event.value, bytes) else None,
        partition=message.partition,
        offset=message.offset,
        source=f"memgrid.faust.{group}",
    )


async def _dead_letter(
    topic: Any,
    event: Any,
    group: str,
    error: BaseException,
    attempts: int,
    envelope: EventEnvelope | None,
) -> None:
    message = event.message
    letter = dead_letter_of(event, group, error, attempts, envelope)
    key = message.key.decode(errors="replace") if isinstance(message.key, bytes) else None
    log.error(
        "%s gave up on %s[%d]@%d: %r",
        group,
        message.topic,
        message.partition,
        message.offset,
        error,
    )
    # Wait for the broker's ack: only then may the failed message be acked.
    pending = await topic.send(
        key=key.encode() if key is not None else None, value=letter.model_dump_json().encode()
    )
    await pending
    DEAD_LETTERED.labels(group, message.topic).inc()
