"""One server span per HTTP request (pure ASGI, so streaming bodies are untouched).

The span continues the client's W3C ``traceparent`` when one is sent, is named
``"<METHOD> <route template>"`` once routing has matched (never the raw path, so
ids do not explode span cardinality), and records the response status. Vault
and store spans started while handling the request nest under it.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.telemetry import context_from_traceparent, tracer


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer_: trace.Tracer | None = None) -> None:
        self.app = app
        self.tracer: trace.Tracer = tracer_ or tracer("services.interface")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        headers = dict(scope.get("headers", ()))
        parent = headers.get(b"traceparent", b"").decode("latin-1") or None
        status = 500

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
