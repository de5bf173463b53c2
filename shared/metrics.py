"""Prometheus metrics: the one registry of memgrid's metric names.

Every service process exposes ``GET /metrics`` (Prometheus text format) with
the instruments below plus the client library's process metrics
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...). Each
process is one service; the ``service`` label is there for embedded mode,
where one process plays several.

Why prometheus-client and not OpenTelemetry metrics with its Prometheus
exporter: Prometheus is the only metrics backend asked for, the OTel exporter
is itself a bridge onto prometheus-client (one more moving part, and still a
beta package), and prometheus-client's collectors are plain thread-safe
objects that the faust and aiohttp servers can render with one call.
Traces stay on OpenTelemetry (shared.telemetry).

Names (all prefixed ``memgrid_``):

HTTP (interface, vault, trainer; shared.http_telemetry):
  ``memgrid_http_requests_total{service,method,route,status}`` counter;
  ``route`` is the route template (``/v1/namespaces/{namespace_id}/memories``),
  never the raw path, so ids do not explode the series count.
  ``memgrid_http_request_duration_seconds{service,method,route}`` histogram.
  ``memgrid_http_errors_total{service,method,route,status}`` counter of
  responses with status >= 400 (4xx: the client's fault, 5xx: ours).

Events (the buses and the faust processors):
  ``memgrid_events_published_total{topic}`` counter, after the broker's ack.
  ``memgrid_events_consumed_total{group,topic}`` counter, events handled
  (dead-lettered ones included: their offset moves on too).
  ``memgrid_event_handler_failures_total{group,topic}`` counter, failed
  handler attempts (each retry counts).
  ``memgrid_events_dead_lettered_total{group,topic}`` counter.
  ``memgrid_consumer_lag{group,topic,partition}`` gauge: events in the
  partition after the group's position (log end offset minus position),
  refreshed after each poll by the Kafka bus's subscribers (at most once a
  second) and every ``telemetry.lag_interval_s`` by the faust processors;
  both read offsets the consumer already has (no extra broker request).

Inference:
  ``memgrid_kv_cache_hits_total`` / ``memgrid_kv_cache_misses_total`` counters
  of the prefix KV cache (services.inference.kv).

Training (services.trainer.service):
  ``memgrid_training_jobs_total{outcome}`` counter, outcome one of
  ``started``, ``succeeded``, ``rejected`` (refused by the evaluation gate),
  ``failed``.
  ``memgrid_training_job_duration_seconds{outcome}`` histogram of finished
  jobs (succeeded, rejected, failed).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Request latencies span ~1 ms (a cache hit) to tens of seconds (a chat turn).
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Training jobs take seconds (a tiny test model) to hours.
_JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)

HTTP_REQUESTS = Counter(
    "memgrid_http_requests",
    "HTTP requests handled, by route template, method and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "memgrid_http_request_duration_seconds",
    "Time from request start to the end of the response body.",
    ["service", "method", "route"],
    buckets=_HTTP_BUCKETS,
)
HTTP_ERRORS = Counter(
    "memgrid_http_errors",
    "HTTP responses with status >= 400 (4xx: bad requests, 5xx: server errors).",
    ["service", "method", "route", "status"],
)
EVENTS_PUBLISHED = Counter(
    "memgrid_events_published", "Events the bus acknowledged, by topic.", ["topic"]
)
EVENTS_CONSUMED = Counter(
    "memgrid_events_consumed",
    "Events a consumer group finished with (handled or dead-lettered).",
    ["group", "topic"],
)
HANDLER_FAILURES = Counter(
    "memgrid_event_handler_failures",
    "Failed handler attempts (each retry counts).",
    ["group", "topic"],
)
DEAD_LETTERED = Counter(
    "memgrid_events_dead_lettered",
    "Events a consumer group gave up on and sent to the dead-letter topic.",
    ["group", "topic"],
)
CONSUMER_LAG = Gauge(
    "memgrid_consumer_lag",
    "Events in a partition after the group's position (end offset - position).",
    ["group", "topic", "partition"],
)
KV_CACHE_HITS = Counter("memgrid_kv_cache_hits", "Prefix KV cache lookups that found an entry.")
KV_CACHE_MISSES = Counter("memgrid_kv_cache_misses", "Prefix KV cache lookups that found none.")
TRAINING_JOBS = Counter(
    "memgrid_training_jobs",
    "Training jobs by outcome: started, succeeded, rejected (evaluation gate), failed.",
    ["outcome"],
)
TRAINING_DURATION = Histogram(
    "memgrid_training_job_duration_seconds",
    "Wall time of finished training jobs, by outcome.",
    ["outcome"],
    buckets=_JOB_BUCKETS,
)


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition of ``registry``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- consumer lag ------------------------------------------------------------------

# (topic, partition) -> offset
Offsets = Mapping[tuple[str, int], int]


def lag_by_partition(ends: Offsets, positions: Offsets) -> dict[tuple[str, int], int]:
    """Lag of each partition in ``ends``: end offset minus the group's position.

    A partition without a known position is left out (counting it from 0 would
    overstate a group that has not fetched yet); a position past the end (an
    end offset older than the position) gives 0, never a negative lag."""
    return {tp: max(end - positions[tp], 0) for tp, end in ends.items() if tp in positions}


def record_lag(group: str, ends: Offsets, positions: Offsets) -> dict[tuple[str, int], int]:
    """Sets ``memgrid_consumer_lag`` of ``group`` from log end offsets and the
    group's positions (see ``lag_by_partition``) and returns the lags."""
    lags = lag_by_partition(ends, positions)
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)
    return lags
