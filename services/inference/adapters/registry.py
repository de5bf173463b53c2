"""Which LoRA adapter serves a namespace, and which adapters a replica keeps loaded.

``AdapterRegistry`` is chat's ``ParametricSource``. Per (tenant, namespace) it
remembers the current adapter id; ``promote`` sets it (checked: the adapter loads
and fits this model), ``retire`` drops it. The trainer (issue 6) publishes
memory.promoted with ``to_tier="parametric"`` and ``target_id`` = the adapter id;
``handle_event`` applies that (and memory.demoted from parametric), and
``subscribe(bus, group)`` wires it in one call: the composition root (embedded
or the Serve replica) calls it, nothing subscribes on its own.

Loaded adapters live in the backend under slot names (``a_`` + a hash of tenant,
namespace and id: peft adapter names cannot contain ``.``) and in an LRU bounded
by ``inference.adapters_max_loaded``; the least recently used is unloaded when a
new one comes in. A request whose adapter is evicted mid-generation fails with
404 ``adapter_not_loaded``: keep the limit above the number of adapters in use
at once. The current-adapter map is in memory; a namespace it has no entry for
(after a restart, on a new replica) is looked up in the vault's adapter records
(the trainer's), at most every 30 s per namespace; an adapter this replica
retired is never brought back from a record that has not caught up yet.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import Conflict, MemgridError, NotFound
from shared.lora.store import AdapterStore
from shared.ports.bus import EventBus, Subscription
from shared.ports.vault import VaultAPI
from shared.schemas.adapters import AdapterState
from shared.schemas.api import Caller
from shared.schemas.events import EventEnvelope, MemoryDemoted, MemoryPromoted
from shared.settings import Settings

from ..backends.base import ModelBackend, SourceRef

log = logging.getLogger(__name__)


class AdapterHost(Protocol):
    """A backend that can load adapters (``TransformersBackend``)."""

    def load_adapter(self, name: str, config: dict[str, Any], weights: bytes) -> None: ...
    def unload_adapter(self, name: str) -> None: ...


@dataclass(frozen=True)
class ActiveAdapter:
    """An adapter loaded and chosen for a request: pass ``slot`` to the backend."""

    adapter_id: str
    slot: str
    namespace: str
    sources: tuple[SourceRef, ...]


def slot_name(tenant: str, namespace: str, adapter_id: str) -> str:
    return "a_" + hashlib.sha256(f"{tenant}/{namespace}/{adapter_id}".encode()).hexdigest()[:24]


class AdapterRegistry:
    def __init__(
        self,
        store: AdapterStore,
        backend: ModelBackend,
        max_loaded: int,
        vault: VaultAPI | None = None,
        recheck_s: float = 30.0,
    ) -> None:
        """``vault``: where a namespace's serving adapter is recorded (the trainer's
        records), asked when this replica knows none — after a restart, or on a
        replica started after the promotion — at most every ``recheck_s`` per
        namespace."""
        if not backend.supports_adapters:
            raise ValueError(f"backend {backend.name!r} cannot load LoRA adapters")
        self.store = store
        self.backend = backend
        self.max_loaded = max_loaded
        self._vault = vault
        self._recheck_s = recheck_s
        self._checked: dict[tuple[str, str], float] = {}
        # Retired here (memory.demoted): never brought back from a vault record that
        # has not caught up yet (the scheduler demotes before the trainer withdraws).
        self._retired: set[str] = set()
        self._current: dict[tuple[str, str], str] = {}
        self._loaded: OrderedDict[str, ActiveAdapter] = OrderedDict()  # slot -> adapter
        # One lock for the map and the LRU; loading (a blob read + peft) happens under
        # it too, so two requests never load the same adapter twice.
        self._lock = threading.RLock()
        self.subscription: Subscription | None = None  # set by build_parametric

    def _host(self) -> AdapterHost:
        host: Any = self.backend
        return host

    # --- namespace -> adapter ------------------------------------------------------

    def promote(self, tenant: str, namespace: str, adapter_id: str) -> ActiveAdapter:
        """Makes ``adapter_id`` the namespace's adapter; 404/409/422 if unusable."""
        with self._lock:
            active = self._ensure_loaded(tenant, namespace, adapter_id)
            self._current[(tenant, namespace)] = adapter_id
            return active

    def retire(self, tenant: str, namespace: str, adapter_id: str | None = None) -> str | None:
        """Stops serving the namespace's adapter (``adapter_id``: only if it is current)."""
        with self._lock:
            current = self._current.get((tenant, namespace))
            if current is None or (adapter_id is not None and current != adapter_id):
                return None
            del self._current[(tenant, namespace)]
            self._retired.add(current)
            self._unload(slot_name(tenant, namespace, current))
            return current

    def current(self, tenant: str, namespace: str) -> str | None:
        with self._lock:
            return self._current.get((tenant, namespace))

    def adapter_for(self, caller: Caller, namespaces: Sequence[str]) -> ActiveAdapter | None:
        """The adapter of the first of ``namespaces`` that has one (the caller may read
        them all: chat checked). Lookups use the caller's tenant only."""
        for namespace in namespaces:
            recorded = None
            if self.current(caller.tenant, namespace) is None:
                recorded = self._recorded(caller.tenant, namespace)  # outside the lock: I/O
            with self._lock:
                adapter_id = self._current.get((caller.tenant, namespace))
                if adapter_id is None and recorded is not None and recorded not in self._retired:
                    adapter_id = self._current[(caller.tenant, namespace)] = recorded
                if adapter_id is None:
                    continue
                try:
                    return self._ensure_loaded(caller.tenant, namespace, adapter_id)
                except (NotFound, Conflict) as exc:
                    # Erased, tampered with or for another model: the request goes on without.
                    log.warning("adapter %s of %s unusable: %s", adapter_id, namespace, exc.detail)
                    if self._current.get((caller.tenant, namespace)) == adapter_id:
                        del self._current[(caller.tenant, namespace)]
        return None

    def _recorded(self, tenant: str, namespace: str) -> str | None:
        """The namespace's serving adapter as the vault records it, or None."""
        if self._vault is None:
            return None
        key, now = (tenant, namespace), time.monotonic()
        with self._lock:
            last = self._checked.get(key)
            if last is not None and now - last < self._recheck_s:
                return None
            self._checked[key] = now
        try:
            records = self._vault.list_adapters(tenant, namespace)
        except MemgridError as exc:  # the vault down, or the namespace gone
            log.warning("serving adapter of %s not read from the vault: %s", namespace, exc)
            return None
        for record in records:
            if record.state in (AdapterState.serving, AdapterState.stale):
                return record.id
        return None

    # --- the LRU of loaded adapters ---------------------------------------------------

    def loaded(self) -> list[str]:
        with self._lock:
            return [a.adapter_id for a in self._loaded.values()]

    def _ensure_loaded(self, tenant: str, namespace: str, adapter_id: str) -> ActiveAdapter:
        slot = slot_name(tenant, namespace, adapter_id)
        hit = self._loaded.get(slot)
        if hit is not None:
            self._loaded.move_to_end(slot)
            return hit
        files = self.store.load(tenant, namespace, adapter_id, self.backend.fingerprint)
        while len(self._loaded) >= self.max_loaded:
            self._unload(next(iter(self._loaded)))
        self._host().load_adapter(slot, files.config, files.weights)
        active = ActiveAdapter(adapter_id, slot, namespace, files.manifest.sources)
        self._loaded[slot] = active
        return active

    def _unload(self, slot: str) -> None:
        if self._loaded.pop(slot, None) is not None:
            self._host().unload_adapter(slot)

    # --- events -------------------------------------------------------------------------

    def handle_event(self, event: EventEnvelope) -> None:
        """memory.promoted to parametric → promote; memory.demoted from it → retire.

        An adapter that cannot serve here (4xx: another model, malformed, gone) is
        logged and skipped: redelivery would not fix it.
        """
        if event.namespace is None:
            return
        if event.topic == MemoryPromoted.topic:
            promoted = MemoryPromoted.model_validate(event.data)
            if promoted.to_tier != "parametric":
                return
            try:
                self.promote(event.tenant, event.namespace, promoted.target_id)
            except MemgridError as exc:
                if exc.status >= 500:
                    raise
                log.warning("adapter %s not served: %s", promoted.target_id, exc.detail)
        elif event.topic == MemoryDemoted.topic:
            demoted = MemoryDemoted.model_validate(event.data)
            if demoted.from_tier == "parametric":
                self.retire(event.tenant, event.namespace, demoted.target_id)

    def subscribe(self, bus: EventBus, group: str = "inference-adapters") -> Subscription:
        return bus.subscribe(group, [MemoryPromoted.topic, MemoryDemoted.topic], self.handle_event)


def build_parametric(
    settings: Settings, backend: ModelBackend, bus: EventBus | None, vault: VaultAPI | None = None
) -> AdapterRegistry | None:
    """The parametric side of a replica or of embedded mode; None when the backend
    cannot load adapters (the remote OpenAI-compatible one). With a bus, the
    registry follows memory.promoted / memory.demoted of the parametric tier."""
    if not backend.supports_adapters:
        return None
    from shared.adapters import create_blob_store

    registry = AdapterRegistry(
        AdapterStore(create_blob_store(settings.blob)),
        backend,
        settings.inference.adapters_max_loaded,
        vault,
    )
    if bus is not None:
        registry.subscription = registry.subscribe(bus)
    return registry
