"""OpenTelemetry tracing, set up once per process from settings.

``setup_tracing`` installs a TracerProvider with the configured exporter (none by
default, so nothing is exported and spans cost almost nothing). Code takes a
tracer with ``tracer(name)`` and wraps store calls with ``traced``. The W3C
``traceparent`` of the current span travels in event envelopes so one trace can
follow a write from the API through the bus.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.errors import ConfigError
from shared.settings import TelemetrySettings

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
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"{cfg.service_name}-{service}"})
        )
        memory: InMemorySpanExporter | None = None
        if cfg.exporter == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif cfg.exporter == "memory":
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
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
        trace.set_tracer_provider(provider)
        _configured["provider"] = provider
        _configured["memory"] = memory
        return memory


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
