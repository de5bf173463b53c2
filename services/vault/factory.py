"""Builds a Vault from settings: store, bus and embedder chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.vault.embedders import EMBEDDERS, create_embedder
from services.vault.service import Vault
from services.vault.stores import GRAPH_STORES, create_graph_store
from shared.adapters import create_event_bus
from shared.ports.bus import EventBus
from shared.registry import scheme_of
from shared.schemas.memcube import utcnow
from shared.settings import Settings
from shared.telemetry import traced_port


def build_vault(
    settings: Settings,
    bus: EventBus | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Vault:
    """``bus`` is passed in embedded mode, where every service shares one bus;
    ``clock`` lets tests simulate time (TTL expiry, the scheduler's decay)."""
    # Name checks first: a typo in a URL must not wait for a model to load.
    GRAPH_STORES.factory(scheme_of(settings.graph.url))
    EMBEDDERS.factory(settings.embedder.backend)
    bus = bus or create_event_bus(settings.bus)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = create_embedder(settings.embedder, settings.cache_dir / "models")
    store = traced_port(create_graph_store(settings.graph, embedder.dimension), "graph")
    return Vault(settings, store, bus, embedder, clock=clock)
