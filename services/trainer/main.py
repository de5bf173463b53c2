"""``memgrid serve --service trainer``: the trainer as its own process.

It consumes its commands and the lifecycle topics from the bus (Kafka in
distributed mode), reads cubes and records adapters through the vault's internal
HTTP API (``MEMGRID_VAULT__URL``), writes adapter files to the BlobStore (MinIO)
and trains on Ray (``trainer.ray_address``; local Ray when unset). A small HTTP
app on ``trainer.web_port`` answers ``/healthz`` (the process is up) and
``/readyz`` (the vault answers), and ``/adapters/{tenant}`` for operators.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.trainer.service import TrainerService
from shared.errors import ConfigError, MemgridError
from shared.http_telemetry import HttpTelemetryMiddleware, add_metrics_route
from shared.settings import Settings
from shared.telemetry import setup_tracing

log = logging.getLogger(__name__)


def create_app(service: TrainerService) -> FastAPI:
    app = FastAPI(title="memgrid trainer", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            service.vault.ready()
        except MemgridError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    add_metrics_route(app)  # training job counters and durations (shared.metrics)
    app.add_middleware(HttpTelemetryMiddleware, service="trainer")
    return app


def build(settings: Settings) -> TrainerService:
    from shared.adapters import create_blob_store, create_event_bus
    from shared.clients.vault_http import HttpVault

    if not settings.vault.url.startswith(("http://", "https://")):
        raise ConfigError(
            "the trainer process needs the vault's internal API: set MEMGRID_VAULT__URL"
        )
    return TrainerService(
        settings,
        HttpVault(settings.vault),
        create_blob_store(settings.blob),
        create_event_bus(settings.bus),
    )


def serve(settings: Settings) -> None:
    import uvicorn

    from shared.logging_setup import uvicorn_log_config

    setup_tracing(settings.telemetry, "trainer")
    service = build(settings)
    service.subscribe()
    port = settings.trainer.web_port
    print(f"memgrid trainer on http://{settings.host}:{port}", flush=True)
    try:
        uvicorn.run(
            create_app(service),
            host=settings.host,
            port=port,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings),
        )
    finally:
        service.close()
        service.bus.close()
