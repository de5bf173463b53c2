"""One server span and the HTTP metrics per request, for every ASGI service.

``HttpTelemetryMiddleware`` (pure ASGI, so streaming bodies are untouched)
continues the client's W3C ``traceparent`` when one is sent (the interface's
vault client sends it, so the vault's spans join the interface's trace), names
the span ``"<METHOD> <route template>"`` once routing has matched (never the
raw path, so ids do not explode span or series cardinality), records the
response status, and counts the request in shared.metrics
(``memgrid_http_requests_total``, ``memgrid_http_request_duration_seconds``,
``memgrid_http_errors_total``). ``add_metrics_route`` adds ``GET /metrics``.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import HTTP_ERRORS, HTTP_LATENCY, HTTP_REQUESTS, render
from shared.telemetry import context_from_traceparent, tracer

# The route label of requests no route matched (404s, probes of random paths):
# one series for all of them instead of one per path.
UNMATCHED = "unmatched"


class HttpTelemetryMiddleware:
    def __init__(
        self, app: ASGIApp, tracer_: trace.Tracer | None = None, *, service: str = "interface"
    ) -> None:
        self.app = app
        self.service = service
        self.tracer: trace.Tracer = tracer_ or tracer(f"services.{service}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        headers = dict(scope.get("headers", ()))
        parent = headers.get(b"traceparent", b"").decode("latin-1") or None
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} request",
            context=context_from_traceparent(parent),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self._count(method, route or UNMATCHED, status, time.perf_counter() - started)

    def _count(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        code = str(status)
        HTTP_REQUESTS.labels(self.service, method, route, code).inc()
        HTTP_LATENCY.labels(self.service, method, route).observe(elapsed_s)
        if status >= 400:
            HTTP_ERRORS.labels(self.service, method, route, code).inc()


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the process's metrics in the Prometheus text format."""
    body, content_type = render()
    return Response(body, media_type=content_type)


def add_metrics_route(app: Starlette) -> None:
    """Adds ``GET /metrics`` to ``app`` (left out of its OpenAPI document)."""
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
