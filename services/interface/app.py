"""The public REST API of memgrid (API v1), built by :func:`create_app`.

No module-level app and no singletons: everything the routes need lives on
``app.state`` (settings, vault, reader, extractor), so tests and the embedded
build may create as many apps as they like.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.interface import (
    routes_access,
    routes_adapters,
    routes_admin,
    routes_audit,
    routes_chat,
    routes_compliance,
    routes_erasure,
    routes_memories,
    routes_namespaces,
    routes_search,
)
from services.interface.audit_trail import AuditTrailMiddleware, Publish, TenantOfKey
from services.interface.decision_spool import SpooledPublisher
from services.interface.extractors import build_extractor
from services.interface.limits import BodyLimitMiddleware
from services.interface.openapi import custom_openapi
from services.interface.ratelimit import RateLimitMiddleware
from services.interface.reader import MemReader
from shared.clients.inference_http import NoInference
from shared.clients.scheduler_inproc import NoScheduler
from shared.http_problems import install_problem_handlers
from shared.http_telemetry import HttpTelemetryMiddleware, add_metrics_route
from shared.ports.audit import AuditReader
from shared.ports.bus import EventBus
from shared.ports.inference import InferenceAPI
from shared.ports.scheduler import SchedulerAPI
from shared.ports.vault import VaultAPI
from shared.schemas.events import EventEnvelope
from shared.settings import Settings
from shared.telemetry import setup_tracing

API_VERSION = "1.0.0"
DESCRIPTION = """memgrid: a memory operating system for LLM applications.

Authenticate with `Authorization: Bearer <key>`. Errors are RFC 9457
`application/problem+json` documents with a stable `code`."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    spool = getattr(app.state, "decision_spool", None)
    if spool is not None:
        spool.close()
    close = getattr(app.state.extractor, "close", None)
    if callable(close):  # the extractor's HTTP client
        close()


def create_app(
    settings: Settings,
    vault: VaultAPI,
    scheduler: SchedulerAPI | None = None,
    inference: InferenceAPI | None = None,
    bus: EventBus | None = None,
    audit: AuditReader | None = None,
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
    app.state.audit = audit  # GET /v1/audit (without one: 503)
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
        routes_audit,
    ):
        app.include_router(module.router)
    add_metrics_route(app)  # unauthenticated, like /healthz: route templates only, no tenant data

    # Added last = outermost: the span covers the size check as well; the audit
    # trail sees the size check's 413s too.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.limits.max_body_bytes)
    if settings.limits.rate_limit_enabled:
        app.add_middleware(RateLimitMiddleware, rate_limit=settings.limits.rate_limit)
    app.add_middleware(
        AuditTrailMiddleware,
        publish=_decision_sink(app, bus, settings),
        tenant_of_key=_key_tenant(vault),
    )
    app.add_middleware(HttpTelemetryMiddleware, service="interface")
    return app


def _decision_sink(app: FastAPI, bus: EventBus | None, settings: Settings) -> Publish:
    """Decisions go on the bus (the audit subscriber logs them), through a local
    spool while the bus is down. Without a bus (tests of the bare API) they are
    kept on ``app.state.decisions``."""
    if bus is not None:
        spool = SpooledPublisher(bus, settings.data_dir / "interface" / "decisions.spool")
        app.state.decision_spool = spool
        return spool
    kept: deque[EventEnvelope] = deque(maxlen=10_000)
    app.state.decisions = kept
    return kept.append


def _key_tenant(vault: VaultAPI) -> TenantOfKey:
    def tenant(prefix: str) -> str | None:
        try:
            record = vault.find_api_key(prefix)
        except Exception:  # an unreachable vault must not hide the denial itself
            return None
        return record.tenant if record is not None else None

    return tenant
