"""Trace propagation through the bus and the stream processors, the file span
exporter and JSON logs carrying the current span's ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared import telemetry
from shared.adapters.bus_memory import MemoryEventBus
from shared.logging_setup import make_handler
from shared.schemas.events import EventEnvelope, MemoryCreated, make_event
from shared.schemas.memcube import Origin, SemanticType, Tier
from shared.settings import TelemetrySettings

pytestmark = pytest.mark.unit


_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test. The process's provider is installed
    once (shared.telemetry); this module's exporter is added to it once, and
    the test says that spans are exported, as with a real exporter."""
    telemetry.setup_tracing(TelemetrySettings(), "unit")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if not getattr(provider, "_memgrid_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        provider._memgrid_test_exporter = True  # type: ignore[attr-defined]
    monkeypatch.setitem(telemetry._configured, "exporting", True)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def created(cube: str = "c1", traceparent: str | None = None) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube,
        version=1,
        tier=Tier.plaintext,
        origin=Origin.user_input,
        semantic_type=SemanticType.fact,
    )
    return make_event(data, source="/t", tenant="t1", namespace="n1", traceparent=traceparent)


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_memory_bus_consumer_span_is_a_child_of_the_send_span(
    spans: InMemorySpanExporter,
) -> None:
    bus = MemoryEventBus()
    seen: list[EventEnvelope] = []
    handled = threading.Event()

    def handler(event: EventEnvelope) -> None:
        seen.append(event)
        handled.set()

    with trace.get_tracer("test").start_as_current_span("POST /memories") as request:
        event = created(traceparent=telemetry.current_traceparent())
    bus.subscribe("g1", ["memory.created"], handler)
    bus.publish("memory.created", event)  # later, from a relay thread: no current span
    assert handled.wait(5)
    bus.close()

    send = named(spans, "send memory.created")
    process = named(spans, "process memory.created")
    trace_id = request.get_span_context().trace_id
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert parent_of(send) == request.get_span_context().span_id
    assert parent_of(process) == send.context.span_id
    assert send.attributes is not None and process.attributes is not None
    assert send.attributes["messaging.destination.name"] == "memory.created"
    assert send.attributes["messaging.kafka.message.key"] == "c1"
    assert process.attributes["messaging.consumer.group.name"] == "g1"
    # What the consumer got carries the send span's context, not the request's.
    assert seen[0].traceparent is not None
    assert seen[0].traceparent.split("-")[1:3] == [
        f"{trace_id:032x}",
        f"{send.context.span_id:016x}",
    ]


def test_a_handler_that_keeps_failing_marks_its_span_failed(spans: InMemorySpanExporter) -> None:
    bus = MemoryEventBus(max_delivery_attempts=2, retry_backoff_s=0.001)

    def handler(event: EventEnvelope) -> None:
        raise RuntimeError("boom")

    bus.subscribe("g2", ["memory.created"], handler)
    bus.publish("memory.created", created())
    bus.flush(5)
    bus.close()
    process = named(spans, "process memory.created")
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception", "exception"]  # one per attempt


def test_without_a_recording_span_the_event_goes_out_unchanged() -> None:
    # No provider at all: the API's no-op tracer (services that never set up tracing).
    tracer = trace.NoOpTracerProvider().get_tracer("x")
    original = telemetry._MESSAGING
    telemetry._MESSAGING = tracer
    try:
        event = created(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        with telemetry.send_span("memory.created", event) as sent:
            assert sent is event
    finally:
        telemetry._MESSAGING = original


def faust_event(envelope: EventEnvelope, topic: str = "memory.created") -> Any:
    message = SimpleNamespace(topic=topic, partition=3, offset=41, key=envelope.key.encode())
    return SimpleNamespace(message=message, value=envelope.model_dump_json().encode())


def test_faust_handle_events_traces_each_event_under_its_producer(
    spans: InMemorySpanExporter,
) -> None:
    pytest.importorskip("faust")
    from shared.streams import handle_events

    producer_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    envelope = created(traceparent=producer_tp)
    got: list[str] = []

    class Stream:
        async def events(self) -> Any:
            yield faust_event(envelope)

    async def handler(event: EventEnvelope) -> None:
        got.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))

    app = SimpleNamespace(conf=SimpleNamespace(id="memgrid-probe"))
    from shared.settings import Settings

    asyncio.run(
        handle_events(Stream(), handler, app=app, settings=Settings(), dead_letter=object())  # type: ignore[arg-type]
    )
    process = named(spans, "process memory.created")
    assert got == ["0af7651916cd43dd8448eb211c80319c"]  # the handler ran inside the span
    assert parent_of(process) == int("b7ad6b7169203331", 16)
    assert process.attributes is not None
    assert process.attributes["messaging.destination.partition.id"] == "3"
    assert process.attributes["messaging.kafka.offset"] == 41


def test_batch_span_links_every_event_of_the_batch(spans: InMemorySpanExporter) -> None:
    tps = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        None,  # an event without a trace adds no link
        "00-11111111111111111111111111111111-2222222222222222-01",
    ]
    with telemetry.batch_span("governance audit", tps, group="memgrid-governance"):
        pass
    span = named(spans, "process governance audit")
    assert span.parent is None
    assert [(lk.context.trace_id, lk.context.span_id) for lk in span.links] == [
        (int("0af7651916cd43dd8448eb211c80319c", 16), int("b7ad6b7169203331", 16)),
        (int("1" * 32, 16), int("2" * 16, 16)),
    ]
    assert span.attributes is not None and span.attributes["messaging.batch.message_count"] == 3


def test_batch_span_starts_nothing_when_spans_go_nowhere(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(telemetry._configured, "exporting", False)
    with telemetry.batch_span(
        "x", ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], group="g"
    ) as span:
        assert span is None
    assert spans.get_finished_spans() == ()


def test_file_exporter_writes_one_json_line_per_span(tmp_path: Path) -> None:
    provider = TracerProvider()
    path = tmp_path / "spans" / "vault-1.jsonl"
    exporter = telemetry.JsonLinesSpanExporter(path)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("outer") as outer,
        tracer.start_as_current_span("inner", kind=SpanKind.PRODUCER, attributes={"a": 1}),
    ):
        pass
    exporter.shutdown()
    inner, outer_rec = [json.loads(line) for line in path.read_text().splitlines()]
    ctx = outer.get_span_context()
    assert inner["name"] == "inner" and inner["kind"] == "PRODUCER"
    assert inner["trace_id"] == outer_rec["trace_id"] == f"{ctx.trace_id:032x}"
    assert inner["parent_span_id"] == outer_rec["span_id"] == f"{ctx.span_id:016x}"
    assert outer_rec["parent_span_id"] is None
    assert inner["attributes"] == {"a": 1}
    assert inner["end_ns"] >= inner["start_ns"]


def test_file_exporter_needs_a_directory() -> None:
    from shared.errors import ConfigError

    # As in a fresh process: setup_tracing does its work only once per process.
    saved = dict(telemetry._configured)
    telemetry._configured.clear()
    try:
        with pytest.raises(ConfigError, match="spans_dir"):
            telemetry.setup_tracing(TelemetrySettings(exporter="file"), "x")
    finally:
        telemetry._configured.clear()
        telemetry._configured.update(saved)


def test_json_log_line_inside_a_span_carries_its_ids(spans: InMemorySpanExporter) -> None:
    out = io.StringIO()
    logger = logging.getLogger("memgrid.test.json")
    logger.propagate = False
    handler = make_handler("json", "vault", out)
    logger.addHandler(handler)
    try:
        with trace.get_tracer("t").start_as_current_span("work") as span:
            logger.warning("inside %s", "the span")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = [json.loads(line) for line in out.getvalue().splitlines()]
    ctx = span.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"
    assert inside["message"] == "inside the span"
    assert inside["level"] == "WARNING" and inside["logger"] == "memgrid.test.json"
    assert inside["service"] == "vault" and inside["time"].endswith("+00:00")
    assert outside["trace_id"] is None and outside["span_id"] is None


def test_text_log_format_is_unchanged() -> None:
    out = io.StringIO()
    handler = make_handler("text", "vault", out)
    record = logging.LogRecord("x.y", logging.INFO, __file__, 1, "hello", None, None)
    assert handler.filter(record)
    handler.emit(record)
    assert out.getvalue().rstrip().endswith("INFO x.y hello")


def test_sampling_decides_at_the_root_and_every_hop_follows_the_traceparent() -> None:
    import pydantic

    def recorded(ratio: float, parent: str | None = None, n: int = 1) -> int:
        cfg = TelemetrySettings(exporter="memory", sample_ratio=ratio)
        provider, memory = telemetry.build_provider(cfg, "unit")
        assert memory is not None
        tracer = provider.get_tracer("t")
        ctx = telemetry.context_from_traceparent(parent) if parent else None
        for _ in range(n):
            with tracer.start_as_current_span("s", context=ctx):
                pass
        return len(memory.get_finished_spans())

    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    not_sampled = sampled[:-2] + "00"
    assert recorded(1.0) == 1 and recorded(0.0) == 0
    # A caller's (or producer's) decision wins over this process's ratio.
    assert recorded(0.0, sampled) == 1
    assert recorded(1.0, not_sampled) == 0
    # New roots: the ratio of them, by trace id.
    assert 800 <= recorded(0.5, n=2000) <= 1200
    with pytest.raises(pydantic.ValidationError, match="sample_ratio"):
        TelemetrySettings(sample_ratio=1.5)
