"""The scheduler as a faust app on Kafka (distributed mode).

The counting itself is ``UsageProcessor`` (services.scheduler.usage); this module
only adapts it to faust:

* ``usage`` is a faust Table (in-memory store, compacted changelog topic
  ``<app_id>-usage-changelog``) keyed by cube id, restored from the changelog
  when a worker starts or takes over partitions.
* Agent ``track_usage`` reads ``memory.accessed`` and the app's internal topic
  ``<app_id>-lifecycle`` in batches, hands each batch to the processor (one
  table write per touched cube) and only then lets faust ack the batch; faust
  flushes the changelog before it commits offsets (at least once).
* Agent ``forward_lifecycle`` re-keys memory.created/updated/deleted (6
  partitions) into ``<app_id>-lifecycle`` (12, as memory.accessed). A faust table
  partition is owned by the worker that owns the same partition of its source
  topics, so all of one cube's events must arrive on the same partition number:
  without the repartition, a cube's lifecycle and access events would update
  its record from two workers.
* The table uses the producer's partitioner on the raw cube-id key, which is
  the partitioner (murmur2) and key the vault publishes with, so a record's
  changelog partition is its events' partition even though batches mix
  partitions.
* Poison messages (not an envelope, a bad payload, a tenant mismatch) go to
  the dead-letter topic with the error; the batch then moves on.

Web (faust's server on ``scheduler.web_port``): ``GET /usage/{cube_id}``
(``?tenant=`` must match when given; routed to the worker that owns the cube),
``GET /stats/usage`` (counters, latency p50/p99; ``?latency=0`` leaves out
the percentiles, ``?reset=latency`` starts a new latency window),
``GET /healthz``, ``GET /readyz`` (503 until the table is restored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import SameNode
from pydantic import ValidationError

from services.scheduler.usage import (
    Delivery,
    PoisonEvent,
    Position,
    UsageProcessor,
    UsageStats,
)
from shared.faust_worker import abort_worker, send_dead_letter
from shared.schemas.events import EventEnvelope
from shared.settings import Settings
from shared.streams import event_topic, make_faust_app
from shared.topics import (
    DAY_MS,
    MEMORY_ACCESSED,
    MEMORY_CREATED,
    MEMORY_DELETED,
    MEMORY_UPDATED,
    TopicSpec,
)

log = logging.getLogger(__name__)

TABLE_NAME = "usage"
# Co-partitioned with memory.accessed: see the module docstring.
PARTITIONS = MEMORY_ACCESSED.partitions
LIFECYCLE_SOURCES = (MEMORY_CREATED, MEMORY_UPDATED, MEMORY_DELETED)


def lifecycle_spec(app_id: str) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-lifecycle",
        PARTITIONS,
        7 * DAY_MS,
        False,
        "cube id, as on memory.accessed",
        "memory.created/updated/deleted re-keyed for the scheduler's usage table",
    )


class _CubeKeyed(MutableMapping[str, Any]):
    """The table keyed by ``str`` cube ids, stored under their raw UTF-8 bytes.

    faust would JSON-encode ``str`` keys (``"c_1"`` with quotes), which hash to
    another partition than the raw key the vault publishes; raw bytes keep the
    changelog partition equal to the source partition."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode()]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.table.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.table)

    def __len__(self) -> int:
        return len(self.table)


@dataclass
class SchedulerStream:
    app: faust.App
    processor: UsageProcessor
    stats: UsageStats
    internal_topics: list[TopicSpec]


def create_app(settings: Settings) -> SchedulerStream:
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
    )
    table = app.Table(
        TABLE_NAME,
        default=None,
        partitions=PARTITIONS,
        key_type=bytes,
        use_partitioner=True,
        help="per-cube usage (services.scheduler.usage.CubeUsage)",
    )
    processor = UsageProcessor(
        _CubeKeyed(table),
        recent_event_ids=cfg.recent_event_ids,
        max_tracked_members=cfg.max_tracked_members,
    )
    stats = UsageStats()
    lifecycle = lifecycle_spec(cfg.app_id)
    usage_sources = _raw_topic(app, PARTITIONS, MEMORY_ACCESSED.name, lifecycle.name)
    lifecycle_in = _raw_topic(app, MEMORY_CREATED.partitions, *(s.name for s in LIFECYCLE_SOURCES))
    lifecycle_out = _raw_topic(app, PARTITIONS, lifecycle.name)
    dead_letters = event_topic(app, settings.bus.dead_letter_topic, settings.bus)
    group = cfg.app_id

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
        except (ValidationError, ValueError, TypeError) as exc:  # TypeError: null value
            await dead_letter(event, exc, None)
            return None

    changelog = table.changelog_topic.get_topic_name()

    async def load_changelog_metadata() -> None:
        # With use_partitioner, faust partitions each changelog write (and routes
        # each /usage request) with the producer's metadata of the changelog
        # topic, which the producer does not load by itself: the first write
        # would fail. Load it before the first batch (a private accessor, hence
        # the guard; partitions_for is aiokafka's public, idempotent call).
        ensure = getattr(app.producer, "_ensure_producer", None)
        if ensure is not None:
            await ensure().partitions_for(changelog)

    @app.agent(usage_sources, name="track_usage")
    async def track_usage(stream: Any) -> None:
        await load_changelog_metadata()
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            try:
                deliveries: list[Delivery] = []
                origins: list[Any] = []
                for event in events:
                    envelope = await decode(event)
                    if envelope is None:
                        continue
                    msg = event.message
                    deliveries.append(
                        Delivery(envelope, Position(msg.topic, msg.partition, msg.offset))
                    )
                    origins.append(event)
                result = processor.process(deliveries)
                for index, error in result.rejected:
                    await dead_letter(origins[index], error, deliveries[index].event)
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

    @app.agent(lifecycle_in, name="forward_lifecycle")
    async def forward_lifecycle(stream: Any) -> None:
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            for event in events:
                envelope = await decode(event)
                if envelope is None:
                    continue
                try:
                    processor.check(envelope)
                except PoisonEvent as exc:
                    await dead_letter(event, exc, envelope)
                    continue
                # Buffered; faust flushes the producer before it commits the
                # offsets of these events, so none is lost between the topics.
                await lifecycle_out.send(key=envelope.key.encode(), value=event.value)

    @app.task
    async def prepare_routing() -> None:
        await load_changelog_metadata()

    _add_views(app, table, processor, stats, settings)
    return SchedulerStream(app, processor, stats, [lifecycle])


def _raw_topic(app: faust.App, partitions: int, *names: str) -> Any:
    """A faust topic over ``names`` with raw keys and values (decoded by us, so a
    malformed message reaches the dead-letter topic instead of crashing faust)."""
    return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")


def _problem(web: Any, status: int, code: str, detail: str) -> Any:
    titles = {404: "Not Found", 503: "Service Unavailable"}
    body = {
        "type": "about:blank",
        "title": titles.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return web.json(body, status=status, content_type="application/problem+json")


def _add_views(
    app: faust.App, table: Any, processor: UsageProcessor, stats: UsageStats, settings: Settings
) -> None:
    capped_at = settings.scheduler.max_tracked_members

    @app.page("/usage/{cube_id}")
    async def usage(web: Any, request: Any, cube_id: str) -> Any:
        try:
            # Answered by the worker that owns the cube's table partition.
            return await app.router.route_req(table.name, cube_id, web, request)
        except SameNode:
            pass
        except TypeError:  # partition metadata not loaded yet: answer locally
            log.warning("usage view: no partition metadata for the usage table yet")
        record = processor.usage(cube_id)
        tenant = request.query.get("tenant")
        if record is None or (tenant is not None and record.tenant != tenant):
            return _problem(web, 404, "usage_not_found", f"no usage recorded for {cube_id!r}")
        return web.json(record.view(capped_at=capped_at))

    @app.page("/stats/usage")
    async def usage_stats(web: Any, request: Any) -> Any:
        body = stats.as_dict(latency=request.query.get("latency") != "0")
        body["cubes"] = len(table)
        if request.query.get("reset") == "latency":  # benches measure one run at a time
            stats.reset_latency()
        return web.json(body)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        recovery = getattr(app.tables, "recovery", None)
        if recovery is None or not recovery.completed.is_set() or app.rebalancing:
            return _problem(web, 503, "recovering", "restoring the usage table from its changelog")
        return web.json({"status": "ready"})
