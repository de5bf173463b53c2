"""Adapters of the shared ports (blobs, events), chosen by the scheme of a settings URL.

Registered: ``file`` (FileBlobStore) and ``memory`` (MemoryEventBus), the
embedded defaults, and ``s3`` (S3BlobStore, MinIO or any S3 service) and
``kafka`` (KafkaEventBus) for distributed mode; each passes the same contract
suite under tests/contract/. Factories are ``module:attr`` strings so choosing
one imports only its driver (kafka-python, minio: the ``kafka`` and ``s3`` extras).
"""

from __future__ import annotations

from shared.ports.blob import BlobStore
from shared.ports.bus import EventBus
from shared.registry import Registry, scheme_of
from shared.settings import BlobSettings, BusSettings

BLOB_STORES = Registry[BlobStore]("blob store")
BLOB_STORES.register("file", "shared.adapters.blob_fs:FileBlobStore.from_settings")
BLOB_STORES.register("s3", "shared.adapters.blob_s3:S3BlobStore.from_settings")

EVENT_BUSES = Registry[EventBus]("event bus")
EVENT_BUSES.register("memory", "shared.adapters.bus_memory:MemoryEventBus.from_settings")
EVENT_BUSES.register("kafka", "shared.adapters.bus_kafka:KafkaEventBus.from_settings")


def create_blob_store(settings: BlobSettings) -> BlobStore:
    """The adapter named by ``settings.url``'s scheme; ConfigError for an unknown one."""
    return BLOB_STORES.create(scheme_of(settings.url), settings)


def create_event_bus(settings: BusSettings) -> EventBus:
    """The adapter named by ``settings.url``'s scheme; ConfigError for an unknown one."""
    return EVENT_BUSES.create(scheme_of(settings.url), settings)


__all__ = [
    "BLOB_STORES",
    "EVENT_BUSES",
    "create_blob_store",
    "create_event_bus",
]
