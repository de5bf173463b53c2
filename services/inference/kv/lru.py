"""An in-memory LRU of KV caches bounded by bytes (``inference.kv_cache_bytes``).

Entries are keyed by ``(tenant, manifest key)``: the manifest key already holds the
tenant and namespace (BlobStore keys are ``tenant/namespace/sha256/digest``), and
the tenant is part of the key again so a lookup can only hit what the caller's
tenant stored. Inserting past the budget evicts least recently used entries and
reports each to ``on_evict`` (the inference service publishes memory.demoted). A
cache larger than the whole budget is not kept. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from shared.metrics import KV_CACHE_HITS, KV_CACHE_MISSES

from ..backends.base import KVPrefix

log = logging.getLogger(__name__)

LruKey = tuple[str, str]


class KVLru:
    def __init__(
        self, budget_bytes: int, on_evict: Callable[[LruKey, KVPrefix], None] | None = None
    ) -> None:
        self.budget_bytes = budget_bytes
        self.on_evict = on_evict
        self._items: OrderedDict[LruKey, KVPrefix] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: LruKey) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: LruKey) -> KVPrefix | None:
        with self._lock:
            prefix = self._items.get(key)
            if prefix is None:
                self.misses += 1
                KV_CACHE_MISSES.inc()
                return None
            self._items.move_to_end(key)
            self.hits += 1
            KV_CACHE_HITS.inc()
            return prefix

    def put(self, key: LruKey, prefix: KVPrefix) -> bool:
        """Keeps ``prefix``; False when it is larger than the whole budget (not kept)."""
        size = prefix.nbytes
        evicted: list[tuple[LruKey, KVPrefix]] = []
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.budget_bytes:
                log.warning("KV cache %s (%d bytes) is over the LRU budget; not kept", key, size)
                return False
            while self._items and self._bytes + size > self.budget_bytes:
                k, v = self._items.popitem(last=False)
                self._bytes -= v.nbytes
                evicted.append((k, v))
            self._items[key] = prefix
            self._bytes += size
        # Callbacks outside the lock: they may publish events or call back in.
        for k, v in evicted:
            self._evicted(k, v)
        return True

    def pop(self, key: LruKey) -> KVPrefix | None:
        with self._lock:
            prefix = self._items.pop(key, None)
            if prefix is not None:
                self._bytes -= prefix.nbytes
        if prefix is not None:
            self._evicted(key, prefix)
        return prefix

    def clear(self) -> None:
        with self._lock:
            items = list(self._items.items())
            self._items.clear()
            self._bytes = 0
        for k, v in items:
            self._evicted(k, v)

    def _evicted(self, key: LruKey, prefix: KVPrefix) -> None:
        if self.on_evict is None:
            return
        try:
            self.on_evict(key, prefix)
        except Exception:  # an observer must not break serving
            log.exception("on_evict failed for KV cache %s", key)
