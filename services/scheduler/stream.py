"""The scheduler as a faust app on Kafka (distributed mode).

It drives the same ``Scheduler`` (services.scheduler.engine) as embedded mode;
this module only adapts it to faust. The state is partitioned two ways, and a
faust table partition is owned by the worker that owns the same partition of
the table's source topics (faust co-partitions the topics an app reads that
have the same partition count), so each half reads topics keyed like its table:

Cube side (12 partitions, as memory.accessed), agent ``track_usage``:

* tables ``usage`` (cube id → usage record) and ``journal`` (cube id → the
  last decisions about it), in memory, each with a compacted changelog topic
  (``<app_id>-<table>-changelog``) it is restored from when a worker starts or
  takes over partitions;
* it reads memory.accessed, ``<app_id>-lifecycle`` (memory.created / updated /
  deleted / expired re-keyed by agent ``forward_lifecycle`` from their 6
  partitions: without it, a cube's lifecycle and access events would update its
  record from two workers) and ``<app_id>-cube-notes`` (what ticks decided about
  a cube: journal entries, merged/expired marks), in batches; per batch it
  updates the records (one table write per touched cube) and sends one message
  of cube summaries per namespace to ``<app_id>-summaries``.

Namespace side (6 partitions, as memory.promoted / demoted), agent
``track_spaces`` and the tick timer:

* table ``spaces`` (namespace id → namespace record: summaries of its cubes,
  caches, adapters, pending commands), same store and changelog;
* it reads memory.promoted, memory.demoted and ``<app_id>-summaries``;
* every ``tick_interval_s`` each worker runs the policies on the namespaces
  whose partitions it owns (routing.run_tick, in a thread: the vault calls of
  expiry and merges block), writes the changed records back, sends the cube
  notes, waits for all of that to be stored, then publishes the commands and its
  own memory.demoted (state first: see engine.py). The TTL sweep
  (vault.expire_due, which covers every namespace) runs on the worker that owns
  namespace partition 0 only.

Both tables use the producer's partitioner on the raw UTF-8 key, which is the
partitioner (murmur2) and key the vault and the bus publish with, so a
record's changelog partition is its events' partition even though batches mix
partitions. Poison messages (not an envelope, a bad payload, a tenant
mismatch) go to the dead-letter topic with the error; the batch then moves on.

Web views: services.scheduler.views.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust

from services.scheduler.engine import LifecycleVault, Scheduler
from services.scheduler.routing import CubeNote, CubeSide, SpaceSide, SummaryBatch, run_tick
from services.scheduler.topology import (
    LIFECYCLE_SOURCES,
    PARTITIONS,
    SPACE_MAX_BYTES,
    SPACE_PARTITIONS,
    Keyed,
    Tables,
    lifecycle_spec,
    notes_spec,
    spaces_changelog_spec,
    summaries_spec,
)
from services.scheduler.usage import Delivery, PoisonEvent, Position, UsageStats
from services.scheduler.views import add_views
from shared.faust_worker import abort_worker, send_dead_letter
from shared.metrics import EVENTS_CONSUMED
from shared.schemas.commands import COMMAND_TYPES
from shared.schemas.events import EventEnvelope, MemoryDemoted
from shared.schemas.memcube import utcnow
from shared.settings import Settings
from shared.streams import (
    add_observability,
    envelope_headers,
    event_topic,
    make_faust_app,
    traced_event,
)
from shared.telemetry import batch_span
from shared.topics import (
    MEMORY_ACCESSED,
    MEMORY_CREATED,
    MEMORY_DEMOTED,
    MEMORY_PROMOTED,
    TopicSpec,
)

log = logging.getLogger(__name__)


@dataclass
class SchedulerStream:
    app: faust.App
    scheduler: Scheduler
    stats: UsageStats
    internal_topics: list[TopicSpec]
    clock: Callable[[], datetime]

    @property
    def processor(self) -> Any:
        return self.scheduler.usage


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    vault: LifecycleVault | None = None,
) -> SchedulerStream:
    """The faust app. ``clock`` gives tick times (tests inject one); ``vault`` the
    lifecycle operations (default: HttpVault on ``settings.vault.url`` when it is
    an http URL; without a vault, expiry and merges are off)."""
    cfg = settings.scheduler
    app = make_faust_app(
        cfg.app_id,
        settings,
        web_port=cfg.web_port,
        topic_partitions=PARTITIONS,
        # Fetch and buffer enough records that a batch can fill up at once.
        broker_max_poll_records=max(cfg.batch_size, 500),
        stream_buffer_maxsize=max(4 * cfg.batch_size, 4096),
        # Changelog writes come in bursts of one per touched cube per batch:
        # linger a little so they travel in a few large produce requests
        # (faust's default, 0 ms and 16 KiB batches, cost ~1/4 of the CPU).
        producer_linger_ms=cfg.producer_linger_ms,
        producer_max_batch_size=512 * 1024,
        # Namespace records may be large (SPACE_MAX_BYTES).
        producer_max_request_size=SPACE_MAX_BYTES,
        consumer_max_fetch_size=SPACE_MAX_BYTES,
    )
    tables = Tables(app)
    if vault is None:
        vault = _http_vault(settings)
    scheduler = Scheduler(
        cfg,
        cubes=Keyed(tables.usage),
        spaces=Keyed(tables.spaces),
        journal=Keyed(tables.journal),
        vault=None,  # the event side never calls the vault; ticks use ``vault``
    )
    cube_side, space_side = CubeSide(scheduler), SpaceSide(scheduler)
    stats = UsageStats()
    specs = [lifecycle_spec(cfg.app_id), notes_spec(cfg.app_id), summaries_spec(cfg.app_id)]
    lifecycle, notes, summaries = (s.name for s in specs)
    usage_sources = _raw_topic(app, PARTITIONS, MEMORY_ACCESSED.name, lifecycle, notes)
    lifecycle_in = _raw_topic(app, MEMORY_CREATED.partitions, *(s.name for s in LIFECYCLE_SOURCES))
    space_sources = _raw_topic(
        app, SPACE_PARTITIONS, MEMORY_PROMOTED.name, MEMORY_DEMOTED.name, summaries
    )
    lifecycle_out = _raw_topic(app, PARTITIONS, lifecycle)
    notes_out = _raw_topic(app, PARTITIONS, notes)
    summaries_out = _raw_topic(app, SPACE_PARTITIONS, summaries)
    outbound = {
        name: event_topic(app, name, settings.bus) for name in (*COMMAND_TYPES, MemoryDemoted.topic)
    }
    dead_letters = event_topic(app, settings.bus.dead_letter_topic, settings.bus)
    group = cfg.app_id
    # A tick works on a copy of its namespaces' records while the vault calls
    # run in a thread; track_spaces waits meanwhile, so that writing the copy
    # back cannot overwrite what it applied in between.
    space_lock = asyncio.Lock()

    async def dead_letter(event: Any, error: BaseException, envelope: EventEnvelope | None) -> None:
        # attempts=1 for a poison event: retrying it cannot help.
        attempts = 0 if envelope is None else 1
        await send_dead_letter(
            dead_letters, event, error, group=group, envelope=envelope, attempts=attempts
        )
        stats.dead_lettered += 1

    async def decode(event: Any) -> EventEnvelope | None:
        try:
            return EventEnvelope.model_validate_json(event.value)
        except (ValueError, TypeError) as exc:  # ValidationError; TypeError: null value
            await dead_letter(event, exc, None)
            return None

    async def decode_as(event: Any, kind: type[CubeNote] | type[SummaryBatch]) -> Any:
        try:
            return kind.decode(event.value)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            await dead_letter(event, exc, None)
            return None

    @app.agent(usage_sources, name="track_usage")
    async def track_usage(stream: Any) -> None:
        await tables.load_metadata()
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            try:
                deliveries: list[Delivery] = []
                origins: list[Any] = []
                cube_notes: list[CubeNote] = []
                for event in events:
                    msg = event.message
                    if msg.topic == notes:
                        note = await decode_as(event, CubeNote)
                        if note is not None:
                            cube_notes.append(note)
                        continue
                    envelope = await decode(event)
                    if envelope is None:
                        continue
                    deliveries.append(
                        Delivery(envelope, Position(msg.topic, msg.partition, msg.offset))
                    )
                    origins.append(event)
                with batch_span(
                    "scheduler usage", [d.event.traceparent for d in deliveries], group=group
                ):
                    result, batches = cube_side.process(deliveries, cube_notes)
                _count_consumed(group, events)
                for index, error in result.rejected:
                    await dead_letter(origins[index], error, deliveries[index].event)
                for batch in batches:
                    # Buffered; faust flushes the producer before it commits the
                    # offsets of this batch, so no summary is lost.
                    await summaries_out.send(key=batch.namespace.encode(), value=batch.encode())
                now = time.time()
                stats.record(result, len(events), now)
                stats.observe_latency(
                    [e.message.timestamp for e in origins if e.message.timestamp], now
                )
            except Exception as exc:
                # A bug, not a bad event. Stopping the worker (rather than going on
                # past unacknowledged offsets) lets a restart redeliver the batch.
                log.exception("%s: batch failed; stopping the worker", group)
                abort_worker(exc)

    @app.agent(space_sources, name="track_spaces")
    async def track_spaces(stream: Any) -> None:
        await tables.load_metadata()
        async for events in stream.take_events(cfg.batch_size, within=cfg.space_batch_within_s):
            try:
                facts: list[EventEnvelope] = []
                batches: list[SummaryBatch] = []
                for event in events:
                    if event.message.topic == summaries:
                        batch = await decode_as(event, SummaryBatch)
                        if batch is not None:
                            batches.append(batch)
                    elif (envelope := await decode(event)) is not None:
                        facts.append(envelope)
                async with space_lock:
                    with batch_span(
                        "scheduler namespaces", [f.traceparent for f in facts], group=group
                    ):
                        space_side.apply(facts, batches)
                _count_consumed(group, events)
            except Exception as exc:
                log.exception("%s: namespace batch failed; stopping the worker", group)
                abort_worker(exc)

    @app.agent(lifecycle_in, name="forward_lifecycle")
    async def forward_lifecycle(stream: Any) -> None:
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            for event in events:
                envelope = await decode(event)
                if envelope is None:
                    continue
                with traced_event(event, envelope, group):
                    try:
                        scheduler.usage.check(envelope)
                    except PoisonEvent as exc:
                        await dead_letter(event, exc, envelope)
                        continue
                    # Buffered; faust flushes the producer before it commits the
                    # offsets of these events, so none is lost between the topics.
                    await lifecycle_out.send(key=envelope.key.encode(), value=event.value)
            _count_consumed(group, events)

    async def tick() -> None:
        """One tick over the namespaces this worker owns (see the module docstring)."""
        if not tables.ready():
            return  # partitions moving or being restored: the next tick will do
        async with space_lock:
            owned = tables.owned_partitions(tables.spaces)
            records = {
                ns: data
                for ns, data in Keyed(tables.spaces).items()
                if data is not None and tables.owns(tables.spaces, ns, owned)
            }
            now = clock()
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(
                None, lambda: run_tick(cfg, records, vault, now, sweep=0 in owned)
            )
            for namespace, data in outcome.spaces.items():
                tables.spaces[namespace.encode()] = data
            for note in outcome.notes:
                await notes_out.send(key=note.cube_id.encode(), value=note.encode())
            await app.producer.flush()  # state stored before any command goes out
        sent = []
        for message in outcome.result.messages:
            topic = outbound[message.topic]
            value = message.event.model_dump_json().encode()
            headers = envelope_headers(message.event)
            sent.append(await topic.send(key=message.key.encode(), value=value, headers=headers))
        for future in sent:
            await future  # acked: logged below as sent
        if outcome.result.decisions:
            kinds = sorted({str(d.kind) for d in outcome.result.decisions})
            log.info(
                "%s tick at %s: %d decisions (%s), %d messages sent",
                group,
                now.isoformat(),
                len(outcome.result.decisions),
                ", ".join(kinds),
                len(sent),
            )

    @app.timer(cfg.tick_interval_s, name="tick")
    async def run_ticks() -> None:
        try:
            await tick()
        except Exception:  # a dependency down or a bug: log, try again next tick
            log.exception("%s: tick failed", group)

    @app.task
    async def prepare_routing() -> None:
        await tables.load_metadata()

    add_views(app, tables, scheduler, stats, settings, clock)
    add_observability(app, settings, "scheduler")
    internal = [*specs, spaces_changelog_spec(cfg.app_id)]
    return SchedulerStream(app, scheduler, stats, internal, clock)


def _http_vault(settings: Settings) -> LifecycleVault | None:
    if not settings.vault.url.startswith(("http://", "https://")):
        log.warning(
            "scheduler: MEMGRID_VAULT__URL is not an http URL (%r): expiry and merges are off",
            settings.vault.url,
        )
        return None
    from shared.clients.vault_http import HttpVault

    return HttpVault(settings.vault)


def _count_consumed(group: str, events: list[Any]) -> None:
    """``memgrid_events_consumed_total`` for a batch: one increment per topic, not
    per event (a label lookup per event would cost a busy processor)."""
    per_topic = Counter(e.message.topic for e in events)
    for topic, n in per_topic.items():
        EVENTS_CONSUMED.labels(group, topic).inc(n)


def _raw_topic(app: faust.App, partitions: int, *names: str) -> Any:
    """A faust topic over ``names`` with raw keys and values (decoded by us, so a
    malformed message reaches the dead-letter topic instead of crashing faust)."""
    return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")
