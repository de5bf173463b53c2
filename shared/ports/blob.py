"""BlobStore: immutable, content-addressed blobs (KV caches, adapters, manifests).

Contract: ``put`` stores bytes under ``{tenant}/{namespace}/sha256/{digest}`` and
returns the key; putting the same bytes twice returns the same key and stores
them once. A blob is never overwritten. Keys outside the tenant's prefix cannot
be read through a tenant-scoped call. Adapters are S3-generic in shape so any S3
service (MinIO in distributed mode) works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shared.errors import BadRequest

# A tenant or namespace id: one path segment, no dot-only names, no separators.
# Every adapter accepts keys only in the exact shape ``blob_key`` produces, which
# rules out traversal (``..``, absolute paths, backslashes) and reads outside the
# tenant's prefix before any path or object name is built.
_SEGMENT = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._\-]{1,200}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobRef:
    key: str
    digest: str
    size: int


def blob_key(tenant: str, namespace: str, digest: str) -> str:
    return f"{tenant}/{namespace}/sha256/{digest}"


def is_segment(value: str) -> bool:
    """Whether ``value`` may be a tenant or namespace id in a blob key."""
    return bool(_SEGMENT.match(value))


def is_digest(value: str) -> bool:
    """Whether ``value`` is a lower-case hex sha256 digest."""
    return bool(_DIGEST.match(value))


def check_segment(kind: str, value: str) -> None:
    """Raises BadRequest when ``value`` (a tenant or namespace id) cannot be used in a key."""
    if not is_segment(value):
        raise BadRequest(f"{kind} {value!r} cannot be used in a blob key")


def split_blob_key(tenant: str, key: str) -> tuple[str, str] | None:
    """``(namespace, digest)`` of a well-formed key of ``tenant``, else None."""
    parts = key.split("/")
    if (
        len(parts) != 4
        or parts[0] != tenant
        or parts[2] != "sha256"
        or not _SEGMENT.match(parts[0])
        or not _SEGMENT.match(parts[1])
        or not _DIGEST.match(parts[3])
    ):
        return None
    return parts[1], parts[3]


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
