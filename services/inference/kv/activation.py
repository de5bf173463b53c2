"""Which KV cache serves a namespace: the ``ActivationSource`` of services/inference/chat.py.

``build`` renders a namespace's memories (its hot set, best first) into exactly the
memory block plaintext injection would put at the start of the prompt
(services/inference/prompts.py), runs it through the model once, saves the cache
to the blob store and makes it the namespace's current cache. ``prefix_for``
answers a request with the current cache of the first of its namespaces that has
one (a cache covers one namespace; the others go in as plaintext). Lookups are by
the caller's tenant, so a cache is never used for another tenant; the caller has
already checked that the principal may read those namespaces.

The current-cache map is in memory: after a restart a cache comes back with
``attach`` (from the scheduler's build command or the graph's KVCache node).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from shared.errors import Conflict, NotFound
from shared.schemas.api import Caller

from ..backends.base import KVPrefix, SourceRef
from ..prompts import MemoryText, render_memories
from .store import KVCacheRef, KVCacheStore, namespace_of

log = logging.getLogger(__name__)


class NamespaceActivations:
    def __init__(self, store: KVCacheStore) -> None:
        self.store = store
        self._current: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def build(
        self, tenant: str, namespace: str, memories: Sequence[MemoryText], budget: int
    ) -> KVCacheRef | None:
        """Builds, stores and selects the namespace's cache; None when nothing fits."""
        backend = self.store.backend
        block = render_memories(memories, budget, backend.count_tokens, backend.truncate_to_tokens)
        if not block.items:
            return None
        sources = [SourceRef(i.memory.id, i.memory.version) for i in block.items]
        ref = self.store.save(tenant, namespace, backend.build_prefix(block.text, sources=sources))
        with self._lock:
            self._current[(tenant, namespace)] = ref.key
        return ref

    def attach(self, tenant: str, namespace: str, key: str) -> KVPrefix:
        """Selects an existing cache (checked: loadable, this model, this namespace)."""
        if namespace_of(tenant, key) != namespace:
            raise NotFound(f"KV cache {key!r} not found", code="kv_cache_not_found")
        prefix = self.store.load(tenant, key)
        with self._lock:
            self._current[(tenant, namespace)] = key
        return prefix

    def detach(self, tenant: str, namespace: str) -> str | None:
        """Stops using the namespace's cache (eviction, demotion); returns its key."""
        with self._lock:
            key = self._current.pop((tenant, namespace), None)
        if key is not None:
            self.store.lru.pop((tenant, key))
        return key

    def current(self, tenant: str, namespace: str) -> str | None:
        with self._lock:
            return self._current.get((tenant, namespace))

    def prefix_for(self, caller: Caller, namespaces: Sequence[str]) -> KVPrefix | None:
        for namespace in namespaces:
            key = self.current(caller.tenant, namespace)
            if key is None:
                continue
            try:
                return self.store.load(caller.tenant, key)
            except (NotFound, Conflict) as exc:
                # Deleted (erasure) or built for another model: plaintext serves instead.
                log.warning("KV cache %s of %s unusable: %s", key, namespace, exc.detail)
                with self._lock:
                    if self._current.get((caller.tenant, namespace)) == key:
                        del self._current[(caller.tenant, namespace)]
        return None
