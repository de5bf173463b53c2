"""BlobStore: immutable, content-addressed blobs (KV caches, adapters, manifests).

Contract: ``put`` stores bytes under ``{tenant}/{namespace}/sha256/{digest}`` and
returns the key; putting the same bytes twice returns the same key and stores
them once. A blob is never overwritten. Keys outside the tenant's prefix cannot
be read through a tenant-scoped call. Adapters are S3-generic in shape so any S3
service (MinIO in distributed mode) works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class BlobRef:
    key: str
    digest: str
    size: int


def blob_key(tenant: str, namespace: str, digest: str) -> str:
    return f"{tenant}/{namespace}/sha256/{digest}"


@runtime_checkable
class BlobStore(Protocol):
    def put(self, tenant: str, namespace: str, data: bytes) -> BlobRef: ...
    def get(self, tenant: str, key: str) -> bytes:
        """Raises shared.errors.NotFound for a missing key or one outside ``tenant/``."""
        ...

    def exists(self, tenant: str, key: str) -> bool: ...
    def delete(self, tenant: str, key: str) -> None:
        """Idempotent: deleting a missing blob is not an error (erasure, orphan sweep)."""
        ...

    def list(self, tenant: str, prefix: str = "") -> list[BlobRef]: ...
    def close(self) -> None: ...
