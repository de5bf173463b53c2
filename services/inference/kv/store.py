"""KVCacheStore: activation memory saved to and loaded from the BlobStore, via the LRU.

``save`` writes the tensors blob then the manifest blob under the namespace (both
content-addressed, so saving the same cache twice stores it once) and keeps the
prefix in the LRU. ``load`` answers from the LRU, else reads the manifest, refuses
a cache for another model (Conflict ``kv_fingerprint_mismatch``) before reading
the tensors, decodes them and caches the result. Keys are only ever read within
the caller's tenant (the BlobStore refuses others as NotFound), so a cache of one
tenant is never served to another; namespace checks are the caller's job (the
manifest key names its namespace: ``namespace_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError, NotFound
from shared.ports.blob import BlobStore, split_blob_key

from ..backends.base import KVPrefix, ModelBackend
from .codec import Manifest, check_fingerprint, decode_tensors, encode_tensors
from .lru import KVLru


@dataclass(frozen=True)
class KVCacheRef:
    """A stored KV cache: ``key`` (the manifest's blob key) is its id."""

    key: str
    tensors_key: str
    token_count: int
    nbytes: int
    record: str | None = None  # the vault's activation cube version (id@version), once recorded


def namespace_of(tenant: str, key: str) -> str:
    """The namespace a cache key belongs to; NotFound if it is not a key of ``tenant``."""
    parts = split_blob_key(tenant, key)
    if parts is None:
        raise NotFound(f"KV cache {key!r} not found", code="kv_cache_not_found")
    return parts[0]


class KVCacheStore:
    def __init__(self, blobs: BlobStore, backend: ModelBackend, lru: KVLru) -> None:
        if not backend.supports_activation:
            raise ConfigError(f"backend {backend.name!r} has no activation memory (KV caches)")
        self.blobs = blobs
        self.backend = backend
        self.lru = lru

    def save(self, tenant: str, namespace: str, prefix: KVPrefix) -> KVCacheRef:
        check_fingerprint(_manifest_stub(prefix), self.backend.fingerprint, _layout(self.backend))
        tensors = encode_tensors(prefix)
        tref = self.blobs.put(tenant, namespace, tensors)
        manifest = Manifest(
            fingerprint=prefix.fingerprint,
            token_ids=prefix.token_ids,
            text=prefix.text,
            sources=prefix.sources,
            dtype=prefix.fingerprint.dtype,
            layout=prefix.layout,
            tensors_key=tref.key,
            tensors_sha256=tref.digest,
            tensors_bytes=tref.size,
        )
        mref = self.blobs.put(tenant, namespace, manifest.to_json())
        self.lru.put((tenant, mref.key), prefix)
        return KVCacheRef(
            key=mref.key, tensors_key=tref.key, token_count=prefix.token_count, nbytes=tref.size
        )

    def manifest(self, tenant: str, key: str) -> Manifest:
        namespace_of(tenant, key)
        return Manifest.from_json(self.blobs.get(tenant, key))

    def load(self, tenant: str, key: str, *, use_lru: bool = True) -> KVPrefix:
        """The prefix stored under ``key``; NotFound, or Conflict for another model."""
        if use_lru:
            hit = self.lru.get((tenant, key))
            if hit is not None:
                return hit
        manifest = self.manifest(tenant, key)
        check_fingerprint(manifest, self.backend.fingerprint, _layout(self.backend))
        if split_blob_key(tenant, manifest.tensors_key) is None:
            raise NotFound(f"KV cache {key!r} not found", code="kv_cache_not_found")
        data = self.blobs.get(tenant, manifest.tensors_key)
        device = str(getattr(getattr(self.backend, "model", None), "device", "cpu"))
        prefix = decode_tensors(manifest, data, device=device)
        if use_lru:
            self.lru.put((tenant, key), prefix)
        return prefix

    def delete(self, tenant: str, key: str) -> None:
        """Drops the cache from memory and the blob store (both blobs); idempotent."""
        self.lru.pop((tenant, key))
        try:
            manifest = self.manifest(tenant, key)
        except NotFound:
            return
        self.blobs.delete(tenant, manifest.tensors_key)
        self.blobs.delete(tenant, key)


def _layout(backend: ModelBackend) -> object:
    return getattr(backend, "layout", None)


def _manifest_stub(prefix: KVPrefix) -> Manifest:
    return Manifest(
        fingerprint=prefix.fingerprint,
        token_ids=prefix.token_ids,
        text="",
        sources=(),
        dtype=prefix.fingerprint.dtype,
        layout=prefix.layout,
        tensors_key="",
        tensors_sha256="",
        tensors_bytes=0,
    )
