"""OpenTelemetry tracing, set up once per process from settings.

``setup_tracing`` installs a TracerProvider with the configured exporter (none by
default, so nothing is exported and spans cost almost nothing). Code takes a
tracer with ``tracer(name)`` and wraps store calls with ``traced``. The W3C
``traceparent`` of the current span travels in HTTP headers (the HTTP clients
inject it; shared.http_telemetry continues it) and in event envelopes and
Kafka headers, so one trace follows a write from the API through the vault,
the bus and its consumers.

Messaging spans follow the OpenTelemetry semantic conventions for messaging:
``send <topic>`` (PRODUCER) around a publish, whose context replaces the
envelope's traceparent, so that ``process <topic>`` (CONSUMER) spans of the
consumers are its children. Span names and attributes: docs/observability.md.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.errors import ConfigError
from shared.settings import TelemetrySettings

if TYPE_CHECKING:
    from shared.schemas.events import EventEnvelope

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_configured: dict[str, Any] = {}
_propagator = TraceContextTextMapPropagator()


def setup_tracing(cfg: TelemetrySettings, service: str) -> InMemorySpanExporter | None:
    """Installs the global provider once per process; later calls are no-ops.

    Returns the in-memory exporter when ``exporter == "memory"`` (tests read it).
    """
    with _lock:
        if "provider" in _configured:
            exp = _configured.get("memory")
            return exp if isinstance(exp, InMemorySpanExporter) else None
        provider, memory = build_provider(cfg, service)
        trace.set_tracer_provider(provider)
        _configured["provider"] = provider
        _configured["memory"] = memory
        _configured["exporting"] = cfg.exporter != "none"
        return memory


def build_provider(
    cfg: TelemetrySettings, service: str
) -> tuple[TracerProvider, InMemorySpanExporter | None]:
    """The provider ``setup_tracing`` installs (not installed here), and its
    in-memory exporter when ``exporter == "memory"``."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"{cfg.service_name}-{service}"}),
        # The root decides (by trace id) and every process after it follows the
        # traceparent's sampled flag: sampling never cuts a trace in half.
        sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
    )
    memory: InMemorySpanExporter | None = None
    if cfg.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif cfg.exporter == "memory":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    elif cfg.exporter == "file":
        if cfg.spans_dir is None:
            raise ConfigError("telemetry.exporter=file needs telemetry.spans_dir")
        path = Path(cfg.spans_dir) / f"{service}-{os.getpid()}.jsonl"
        # Simple (synchronous) processor: a span is on disk once it ended,
        # so a reader in another process sees it without a flush.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    elif cfg.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "telemetry.exporter=otlp needs the 'otlp' extra: pip install memgrid[otlp]"
            ) from exc
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=cfg.otlp_endpoint))
        )
    return provider, memory


def tracing_enabled() -> bool:
    """Whether spans go anywhere. Hot paths that would start one span per event
    (a stream processor's batches) skip them when nothing would record them."""
    return bool(_configured.get("exporting"))


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (``exporter=file``).

    Written for tests and debugging across processes, where the SDK's
    in-memory exporter cannot be read from outside the process; the SDK has
    no file exporter. Fields: trace_id, span_id, parent_span_id (hex or
    null), name, kind, service, start_ns, end_ns, status, attributes, links.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(s), default=str) + "\n" for s in spans]
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.writelines(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as a plain dict (ids in hex, as in a traceparent)."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"trace_id": f"{lk.context.trace_id:032x}", "span_id": f"{lk.context.span_id:016x}"}
            for lk in span.links
        ],
    }


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def traced(span_name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: runs the function inside a span named ``span_name``."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        t = trace.get_tracer(fn.__module__)

        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with t.start_as_current_span(span_name):
                return fn(*args, **kwargs)

        return inner

    return wrap


class _TracedPort:
    """Proxy that runs every public method of an adapter inside a span.

    Wrapping at the port rather than inside each adapter means every backend of a
    port (SQLite and Neo4j alike) is traced the same way, with no code in them.
    """

    def __init__(self, inner: object, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix
        self._tracer = trace.get_tracer(f"memgrid.{prefix}")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        span_name = f"{self._prefix}.{name}"

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._tracer.start_as_current_span(span_name):
                return attr(*args, **kwargs)

        return call


def traced_port(inner: R, prefix: str) -> R:
    """``inner`` with a span around each public method call (``prefix.method``)."""
    proxy: R = _TracedPort(inner, prefix)  # type: ignore[assignment]
    return proxy


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """The context to start a consumer's span in, continuing the producer's trace."""
    if not traceparent:
        return otel_context.Context()
    return _propagator.extract({"traceparent": traceparent})


# --- messaging spans (OpenTelemetry semantic conventions for messaging) -------------

_MESSAGING = trace.get_tracer("memgrid.messaging")


def _message_attributes(topic: str, event: EventEnvelope, system: str) -> dict[str, Any]:
    return {
        "messaging.system": system,
        "messaging.destination.name": topic,
        "messaging.message.id": event.id,
        "messaging.kafka.message.key": event.key,
        "cloudevents.event_type": event.type,
        "cloudevents.event_id": event.id,
    }


def _links(traceparents: Sequence[str | None]) -> list[Link]:
    """Span links to the spans of the valid ``traceparents``."""
    links = []
    for tp in traceparents:
        ctx = trace.get_current_span(context_from_traceparent(tp)).get_span_context()
        if ctx.is_valid:
            links.append(Link(ctx))
    return links


@contextmanager
def send_span(
    topic: str, event: EventEnvelope, *, system: str = "kafka"
) -> Iterator[EventEnvelope]:
    """A PRODUCER span ``send <topic>`` around publishing ``event``.

    The span continues the trace the event was created in (its traceparent:
    an outbox relay publishes long after the request that wrote the event) and
    yields the event with the span's own traceparent, which is what goes on
    the wire, so consumers' spans are children of this one. Without a
    recording span the event is yielded as it is."""
    parent = context_from_traceparent(event.traceparent) if event.traceparent else None
    with _MESSAGING.start_as_current_span(
        f"send {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            **_message_attributes(topic, event, system),
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        },
    ) as span:
        traceparent = current_traceparent() if span.is_recording() else None
        if traceparent and traceparent != event.traceparent:
            event = event.model_copy(update={"traceparent": traceparent})
        yield event


@contextmanager
def process_span(
    topic: str,
    event: EventEnvelope,
    *,
    group: str,
    system: str = "kafka",
    partition: int | None = None,
    offset: int | None = None,
    links: Sequence[str | None] = (),
) -> Iterator[trace.Span]:
    """A CONSUMER span ``process <topic>`` around handling ``event`` in ``group``,
    a child of the producer's span (the event's traceparent). ``links``: more
    traceparents the handling stands for (a batch); each becomes a span link."""
    attributes: dict[str, Any] = {
        **_message_attributes(topic, event, system),
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": group,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    span_links = _links(links)
    with _MESSAGING.start_as_current_span(
        f"process {topic}",
        context=context_from_traceparent(event.traceparent),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=span_links,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def mark_error(span: trace.Span, error: BaseException) -> None:
    """Marks ``span`` failed because of ``error`` (its attempts recorded the
    exceptions themselves)."""
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


@contextmanager
def batch_span(
    destination: str, traceparents: Sequence[str | None], *, group: str
) -> Iterator[trace.Span | None]:
    """A CONSUMER span ``process <destination>`` around handling a batch of
    events at once, linked to each event's producer span (the semantic
    conventions' way to trace batch processing: a batch has many parents).
    Yields None, starting nothing, while tracing exports nothing: this runs
    once per batch on a stream processor's hot path."""
    if not tracing_enabled():
        yield None
        return
    links = _links(traceparents)
    with _MESSAGING.start_as_current_span(
        f"process {destination}",
        context=otel_context.Context(),  # a root: its parents are the links
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": destination,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": group,
            "messaging.batch.message_count": len(traceparents),
        },
    ) as span:
        yield span
