"""Ports: the Protocols every adapter implements, and their registries."""

from shared.ports.blob import BlobRef, BlobStore
from shared.ports.bus import EventBus, Handler, Subscription
from shared.ports.embedder import Embedder
from shared.ports.graph import CubeWrite, GraphStore, OutboxItem, Scored, WriteBatch
from shared.ports.vault import VaultAPI

__all__ = [
    "BlobRef",
    "BlobStore",
    "CubeWrite",
    "Embedder",
    "EventBus",
    "GraphStore",
    "Handler",
    "OutboxItem",
    "Scored",
    "Subscription",
    "VaultAPI",
    "WriteBatch",
]
