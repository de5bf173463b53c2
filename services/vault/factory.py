"""Builds a Vault from settings: store, bus and embedder chosen by name."""

from __future__ import annotations

from services.vault.embedders import create_embedder
from services.vault.service import Vault
from services.vault.stores import create_graph_store
from shared.adapters import create_event_bus
from shared.ports.bus import EventBus
from shared.settings import Settings
from shared.telemetry import traced_port


def build_vault(settings: Settings, bus: EventBus | None = None) -> Vault:
    """``bus`` is passed in embedded mode, where every service shares one bus."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = create_embedder(settings.embedder, settings.cache_dir / "models")
    store = traced_port(create_graph_store(settings.graph, embedder.dimension), "graph")
    return Vault(settings, store, bus or create_event_bus(settings.bus), embedder)
