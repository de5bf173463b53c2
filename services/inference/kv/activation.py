"""Which KV cache serves a namespace: the current cache per namespace, recorded
in the vault and announced on the bus.

``build`` renders a namespace's memories (best first) into exactly the memory
block plaintext injection would put at the start of the prompt
(services/inference/prompts.py), runs it through the model once, saves the cache
to the blob store, records it in the vault as the namespace's current cache (an
activation-tier cube DERIVED_FROM its sources: services/vault/activations.py) and
publishes memory.promoted. ``evict`` (the scheduler's EvictActivation, or the LRU
pushing out a namespace's current cache) demotes it in the vault and publishes
memory.demoted. ``prefix_for`` answers a request with the current cache of the
first of its namespaces that has one.

The vault's record is the truth, so a restarted process or another replica finds
the cache; the local map only saves a vault call per chat and is refreshed after
``refresh_s``. Lookups are by the caller's tenant and only for the namespaces
the request names (which the chat engine has checked the caller may read), so a
cache is never used for another tenant or namespace.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from shared.errors import Conflict, NotFound
from shared.ports.bus import EventBus
from shared.ports.vault import VaultAPI
from shared.schemas.api import Caller
from shared.schemas.events import EventData, MemoryDemoted, MemoryPromoted, make_event
from shared.schemas.memcube import ActivationPayload, Tier

from ..backends.base import KVPrefix, SourceRef
from ..prompts import MemoryText, render_memories
from .store import KVCacheRef, KVCacheStore, namespace_of

log = logging.getLogger(__name__)
SOURCE = "/memgrid/inference"
LRU_REASON = "evicted from the KV cache LRU (inference.kv_cache_bytes)"

Key = tuple[str, str]  # (tenant, namespace)


def derived_event_id(command_id: str, what: str) -> str:
    """The id of the fact confirming a command: the scheduler's own rule
    (services/scheduler/engine.py), so a redelivered command, or the scheduler's
    own memory.demoted for an eviction, is one event to every consumer."""
    return str(uuid.uuid5(uuid.UUID(command_id), what))


class NamespaceActivations:
    def __init__(
        self,
        store: KVCacheStore,
        records: VaultAPI | None = None,
        bus: EventBus | None = None,
        *,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``records``: the vault keeping the current cache per namespace (None: in
        memory only); ``bus``: where memory.promoted / demoted go (None: nowhere)."""
        self.store = store
        self._records = records
        self._bus = bus
        self._refresh_s = refresh_s
        self._clock = clock
        self._current: dict[Key, str | None] = {}
        self._checked: dict[Key, float] = {}
        self._lock = threading.Lock()
        store.lru.on_evict = self._on_evict

    # --- build, select, drop ---------------------------------------------------------

    def build(
        self,
        tenant: str,
        namespace: str,
        memories: Sequence[MemoryText],
        budget: int,
        *,
        reason: str = "built on request",
        command_id: str | None = None,
    ) -> KVCacheRef | None:
        """Builds, stores, records and selects the namespace's cache; None when
        nothing fits. Publishing failures raise (a command is then redelivered and
        finds the cache already recorded)."""
        backend = self.store.backend
        block = render_memories(memories, budget, backend.count_tokens, backend.truncate_to_tokens)
        if not block.items:
            return None
        sources = [SourceRef(i.memory.id, i.memory.version) for i in block.items]
        prefix = backend.build_prefix(block.text, sources=sources)
        ref = self.store.save(tenant, namespace, prefix)
        if self._records is not None:
            fp = prefix.fingerprint
            payload = ActivationPayload(
                blob_key=ref.tensors_key,
                manifest_key=ref.key,
                model_fingerprint=fp.short() if fp is not None else "",
                token_count=ref.token_count,
                source_refs=[str(s) for s in sources],
            )
            cube = self._records.record_activation(tenant, namespace, payload, reason, command_id)
            ref = dataclasses.replace(ref, record=cube.ref)
        old = self._select(tenant, namespace, ref.key)
        cube_ids = [s.cube_id for s in sources]
        self._publish(
            tenant,
            namespace,
            MemoryPromoted(
                cube_ids=cube_ids,
                from_tier=Tier.plaintext,
                to_tier=Tier.activation,
                target_id=ref.key,
                reason=reason,
                command_id=command_id,
            ),
            derived_event_id(command_id, "promoted") if command_id else None,
        )
        if old is not None and old != ref.key:
            # The record already points at the new cache; the old one is just dropped.
            self.store.lru.pop((tenant, old))
            self._publish_demoted(tenant, namespace, old, f"superseded by {ref.key}", None, None)
        return ref

    def attach(self, tenant: str, namespace: str, key: str) -> KVPrefix:
        """Selects an existing cache (checked: loadable, this model, this namespace)."""
        if namespace_of(tenant, key) != namespace:
            raise NotFound(f"KV cache {key!r} not found", code="kv_cache_not_found")
        prefix = self.store.load(tenant, key)
        self._select(tenant, namespace, key)
        return prefix

    def detach(self, tenant: str, namespace: str) -> str | None:
        """Stops using the namespace's cache in this process; returns its key."""
        key = self._select(tenant, namespace, None)
        if key is not None:
            self.store.lru.pop((tenant, key))
        return key

    def evict(
        self,
        tenant: str,
        namespace: str,
        target_id: str,
        reason: str,
        *,
        command_id: str | None = None,
        cube_ids: Sequence[str] | None = None,
    ) -> None:
        """Demotes ``target_id``: no longer current here and in the vault, dropped
        from memory (the blobs stay: history, and a later build may reuse them),
        memory.demoted published. Idempotent."""
        with self._lock:
            if self._current.get((tenant, namespace)) == target_id:
                self._current[(tenant, namespace)] = None
                self._checked[(tenant, namespace)] = self._clock()
        self.store.lru.pop((tenant, target_id))  # not current any more: no second demotion
        if self._records is not None:
            self._records.demote_activation(tenant, namespace, target_id, reason)
        self._publish_demoted(tenant, namespace, target_id, reason, command_id, cube_ids)

    # --- lookups ---------------------------------------------------------------------

    def current(self, tenant: str, namespace: str) -> str | None:
        """The namespace's current cache key, from the vault's record when the local
        copy is older than ``refresh_s`` (or absent: a restart)."""
        key = (tenant, namespace)
        with self._lock:
            checked = self._checked.get(key)
            if self._records is None or (
                checked is not None and self._clock() - checked < self._refresh_s
            ):
                return self._current.get(key)
        try:
            cube = self._records.current_activation(tenant, namespace)
        except Exception as exc:  # the vault down must not fail a chat: plaintext serves
            log.warning("current KV cache of %s not known: %s", namespace, exc)
            with self._lock:
                return self._current.get(key)
        found = None
        if cube is not None and isinstance(cube.payload, ActivationPayload):
            found = cube.payload.manifest_key
        with self._lock:
            self._current[key] = found
            self._checked[key] = self._clock()
        return found

    def prefix_for(self, caller: Caller, namespaces: Sequence[str]) -> KVPrefix | None:
        for namespace in namespaces:
            key = self.current(caller.tenant, namespace)
            if key is None:
                continue
            try:
                return self.store.load(caller.tenant, key)
            except NotFound as exc:  # erased: plaintext serves instead
                log.warning("KV cache %s of %s gone: %s", key, namespace, exc.detail)
                with self._lock:
                    if self._current.get((caller.tenant, namespace)) == key:
                        self._current[(caller.tenant, namespace)] = None
            except Conflict as exc:  # built for another model (another replica's may serve it)
                log.warning("KV cache %s of %s not for this model: %s", key, namespace, exc.detail)
        return None

    # --- internals -------------------------------------------------------------------

    def _select(self, tenant: str, namespace: str, key: str | None) -> str | None:
        with self._lock:
            old = self._current.get((tenant, namespace))
            self._current[(tenant, namespace)] = key
            self._checked[(tenant, namespace)] = self._clock()
        return old

    def _on_evict(self, lru_key: tuple[str, str], prefix: KVPrefix) -> None:
        """The LRU pushed a cache out of memory. If it is a namespace's current cache
        that is a demotion (activation → plaintext): the scheduler learns it and may
        build again. Other entries (superseded, detached) just leave memory."""
        tenant, key = lru_key
        namespace = namespace_of(tenant, key)
        with self._lock:
            if self._current.get((tenant, namespace)) != key:
                return
        cube_ids = [s.cube_id for s in prefix.sources]
        self.evict(tenant, namespace, key, LRU_REASON, cube_ids=cube_ids)

    def _publish_demoted(
        self,
        tenant: str,
        namespace: str,
        key: str,
        reason: str,
        command_id: str | None,
        cube_ids: Sequence[str] | None,
    ) -> None:
        if cube_ids is None:
            try:
                cube_ids = [s.cube_id for s in self.store.manifest(tenant, key).sources]
            except NotFound:
                cube_ids = []
        data = MemoryDemoted(
            cube_ids=list(cube_ids),
            from_tier=Tier.activation,
            to_tier=Tier.plaintext,
            target_id=key,
            reason=reason,
            command_id=command_id,
        )
        self._publish(
            tenant, namespace, data, derived_event_id(command_id, "demoted") if command_id else None
        )

    def _publish(self, tenant: str, namespace: str, data: EventData, event_id: str | None) -> None:
        if self._bus is None:
            return
        event = make_event(data, source=SOURCE, tenant=tenant, namespace=namespace)
        if event_id is not None:
            event = event.model_copy(update={"id": event_id})
        self._bus.publish(data.topic, event, key=namespace)
