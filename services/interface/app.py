"""The public REST API of memgrid (API v1), built by :func:`create_app`.

No module-level app and no singletons: everything the routes need lives on
``app.state`` (settings, vault, reader, extractor), so tests and the embedded
build may create as many apps as they like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.interface import (
    routes_access,
    routes_adapters,
    routes_admin,
    routes_chat,
    routes_compliance,
    routes_erasure,
    routes_memories,
    routes_namespaces,
    routes_search,
)
from services.interface.extractors import build_extractor
from services.interface.limits import BodyLimitMiddleware
from services.interface.openapi import custom_openapi
from services.interface.reader import MemReader
from shared.clients.inference_http import NoInference
from shared.clients.scheduler_inproc import NoScheduler
from shared.http_problems import install_problem_handlers
from shared.http_telemetry import HttpTelemetryMiddleware, add_metrics_route
from shared.ports.bus import EventBus
from shared.ports.inference import InferenceAPI
from shared.ports.scheduler import SchedulerAPI
from shared.ports.vault import VaultAPI
from shared.settings import Settings
from shared.telemetry import setup_tracing

API_VERSION = "1.0.0"
DESCRIPTION = """memgrid: a memory operating system for LLM applications.

Authenticate with `Authorization: Bearer <key>`. Errors are RFC 9457
`application/problem+json` documents with a stable `code`."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    close = getattr(app.state.extractor, "close", None)
    if callable(close):  # the extractor's HTTP client
        close()


def create_app(
    settings: Settings,
    vault: VaultAPI,
    scheduler: SchedulerAPI | None = None,
    inference: InferenceAPI | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    """The API v1 app over ``vault``, with ``scheduler`` for memory usage (without
    one, every memory reads as not yet tracked), ``inference`` for ``POST
    /v1/chat`` (without one, chat answers 503) and ``bus`` for the commands it
    publishes (``POST /v1/namespaces/{id}/adapters``; without one that answers
    503). The caller owns the bus and closes it. Raises ConfigError for unknown
    backends."""
    setup_tracing(settings.telemetry, "interface")
    app = FastAPI(
        title="memgrid",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.vault = vault
    # Not app.state.scheduler: embedded mode keeps the scheduler itself there.
    app.state.scheduler_api = scheduler if scheduler is not None else NoScheduler()
    app.state.inference = inference if inference is not None else NoInference()
    app.state.bus = bus
    app.state.reader = MemReader(context_window=settings.search.context_window)
    app.state.extractor = build_extractor(settings.extractor)

    install_problem_handlers(app)
    app.openapi = custom_openapi(app)  # type: ignore[method-assign]
    for module in (
        routes_admin,
        routes_namespaces,
        routes_memories,
        routes_search,
        routes_chat,
        routes_adapters,
        routes_erasure,
        routes_compliance,
        routes_access,
    ):
        app.include_router(module.router)
    add_metrics_route(app)  # unauthenticated, like /healthz: route templates only, no tenant data

    # Added last = outermost: the span covers the size check as well.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.limits.max_body_bytes)
    app.add_middleware(HttpTelemetryMiddleware, service="interface")
    return app
