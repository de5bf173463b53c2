"""Activation memory: KV caches as generation prefixes (docs/inference.md).

``backend.build_prefix(text)`` makes a ``KVPrefix``; ``KVCacheStore`` saves it to the
BlobStore (safetensors + JSON manifest, ``codec``), loads it back refusing caches of
another model, and keeps loaded ones in the byte-bounded ``KVLru``.
``NamespaceActivations`` is chat's ``ActivationSource``: the current cache per namespace.
"""

from __future__ import annotations

from .activation import NamespaceActivations
from .codec import FORMAT, Manifest
from .lru import KVLru
from .store import KVCacheRef, KVCacheStore, namespace_of

__all__ = [
    "FORMAT",
    "KVCacheRef",
    "KVCacheStore",
    "KVLru",
    "Manifest",
    "NamespaceActivations",
    "namespace_of",
]
