"""``memgrid serve --service interface``: the public API as its own process."""

from __future__ import annotations

from shared.adapters import create_event_bus
from shared.clients.inference_http import HttpInference, NoInference
from shared.clients.scheduler_http import HttpScheduler
from shared.clients.vault_http import HttpVault
from shared.errors import ConfigError
from shared.settings import Settings


def serve(settings: Settings) -> None:
    import uvicorn

    from services.interface.app import create_app

    if not settings.vault.url.startswith(("http://", "https://")):
        raise ConfigError(
            "the interface service needs the vault's URL: MEMGRID_VAULT__URL=http://host:port"
        )
    vault = HttpVault(settings.vault)
    # Memory usage (GET /v1/memories/{id}/usage) from the scheduler's web server;
    # a scheduler that is down only makes that route answer 503.
    scheduler = HttpScheduler(settings.scheduler)
    # POST /v1/chat forwards to the inference service's Serve app; without its URL
    # chat answers 503 (inference_unavailable) and everything else works.
    cfg = settings.inference.serve
    inference = HttpInference(cfg) if cfg.url.startswith("http") else NoInference()
    # POST /v1/namespaces/{id}/adapters publishes TrainAdapter commands (the trainer
    # consumes them); the interface only publishes, it subscribes to nothing.
    bus = create_event_bus(settings.bus)
    app = create_app(settings, vault, scheduler, inference, bus=bus)
    print(f"memgrid interface on http://{settings.host}:{settings.port}", flush=True)
    print(
        f"  vault {settings.vault.url}, scheduler {scheduler.url}, inference {cfg.url}", flush=True
    )
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        bus.close()
        inference.close()
        scheduler.close()
        vault.close()
