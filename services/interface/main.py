"""``memgrid serve --service interface``: the public API as its own process."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shared.adapters import create_event_bus
from shared.clients.audit_http import HttpAuditReader
from shared.clients.inference_http import HttpInference, NoInference
from shared.clients.scheduler_http import HttpScheduler
from shared.clients.vault_http import HttpVault
from shared.errors import ConfigError
from shared.ports.bus import EventBus, Handler, Subscription
from shared.schemas.events import EventEnvelope
from shared.settings import BusSettings, Settings


class LazyBus:
    """The event bus, connected on first use: the interface only publishes
    (``POST /v1/namespaces/{id}/adapters``), so a broker that is down makes that
    route answer 503 ``bus_unavailable`` instead of stopping the whole API; the
    next call tries again."""

    def __init__(self, cfg: BusSettings) -> None:
        self._cfg = cfg
        self._bus: EventBus | None = None
        self._lock = threading.Lock()

    def _get(self) -> EventBus:
        with self._lock:
            if self._bus is None:
                self._bus = create_event_bus(self._cfg)
            return self._bus

    def publish(self, topic: str, event: EventEnvelope, key: str | None = None) -> None:
        self._get().publish(topic, event, key=key)

    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> Subscription:
        return self._get().subscribe(group, topics, handler)

    def flush(self, timeout_s: float = 10.0) -> None:
        if self._bus is not None:
            self._bus.flush(timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._bus is not None:
                self._bus.close()


def serve(settings: Settings) -> None:
    import uvicorn

    from services.interface.app import create_app
    from shared.logging_setup import uvicorn_log_config

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
    bus = LazyBus(settings.bus)
    # GET /v1/audit reads the governance worker's log through its internal route.
    audit = HttpAuditReader(settings.governance)
    app = create_app(settings, vault, scheduler, inference, bus=bus, audit=audit)
    print(f"memgrid interface on http://{settings.host}:{settings.port}", flush=True)
    print(
        f"  vault {settings.vault.url}, scheduler {scheduler.url}, inference {cfg.url}", flush=True
    )
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings),
        )
    finally:
        bus.close()
        inference.close()
        scheduler.close()
        vault.close()
