"""Activation memory in the inference service: the build endpoint, the scheduler's
commands and chat's ``ActivationSource``, over ``NamespaceActivations`` (kv/).

Which memories a cache holds (docs/inference.md#activation-memory-end-to-end):

* ``POST /v1/namespaces/{id}/activation`` names them: ``cube_ids`` (in that order),
  or ``query`` (the top ``top_k`` memories the vault retrieves for it, i.e. what
  plaintext injection would pick for that query). The scheduler's hot set is not
  asked here: the scheduler builds from it itself, with BuildActivation commands,
  and the inference service does not depend on the scheduler.
* ``BuildActivation`` (from the scheduler): its ``cube_ids``, hottest first, within
  its ``token_budget``. Memories gone or changed since the decision are skipped;
  the current version of each is used.

Commands are idempotent by ``command_id``: remembered in this process, and the
vault's record of the current cache carries the id of the command that built it,
so a command delivered again after a restart is not built twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.errors import FieldError, MemgridError, NotFound, Unavailable, ValidationFailed
from shared.ports.bus import EventBus, Subscription
from shared.ports.vault import VaultAPI
from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.api import Caller, SearchRequest
from shared.schemas.commands import BuildActivation, EvictActivation
from shared.schemas.erasure import ERASED
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import MemCube, Tier
from shared.settings import InferenceSettings, Settings

from .prompts import MemoryText

if TYPE_CHECKING:
    from .backends.base import KVPrefix, ModelBackend
    from .kv import NamespaceActivations

log = logging.getLogger(__name__)
COMMAND_GROUP = "memgrid-inference"
COMMAND_TOPICS = (BuildActivation.topic, EvictActivation.topic)
SYSTEM_PRINCIPAL = "system:scheduler"
_SEEN = 1024  # command ids remembered in process


class ActivationService:
    def __init__(
        self, settings: InferenceSettings, activations: NamespaceActivations, vault: VaultAPI | None
    ) -> None:
        self._cfg = settings
        self.activations = activations
        self._vault = vault
        self._seen: dict[str, None] = {}
        self._lock = threading.Lock()
        self.subscription: Subscription | None = None

    # chat's ActivationSource
    def prefix_for(self, caller: Caller, namespaces: Sequence[str]) -> KVPrefix | None:
        return self.activations.prefix_for(caller, namespaces)

    # --- POST /v1/namespaces/{id}/activation -----------------------------------------

    def build_for(
        self, caller: Caller, namespace: str, req: ActivationBuildRequest
    ) -> ActivationBuilt:
        """Raises 4xx MemgridErrors for bad requests, Unavailable without a vault."""
        vault = self._need_vault()
        budget = req.token_budget or self._cfg.serve.default_token_budget
        if budget > self._cfg.kv_max_tokens:
            raise ValidationFailed(
                f"token budget above {self._cfg.kv_max_tokens}",
                [FieldError("body.token_budget", f"at most {self._cfg.kv_max_tokens}")],
            )
        vault.get_namespace(caller, namespace)  # 404 for unknown or another tenant's
        if req.cube_ids:
            memories = []
            for cube_id in dict.fromkeys(req.cube_ids):
                cube = vault.get_memory(caller, cube_id)
                if not _usable(cube, namespace):
                    raise NotFound(
                        f"memory {cube_id!r} not found in {namespace}", code="memory_not_found"
                    )
                memories.append(_text(cube))
        elif req.query:
            top_k = req.top_k or self._cfg.serve.retrieve_top_k
            found = vault.search(
                caller,
                SearchRequest(query=req.query, namespaces=[namespace], top_k=top_k),
                publish_access=False,
            )
            memories = [
                MemoryText(h.id, h.version, h.namespace, h.text, h.score) for h in found.results
            ]
        else:
            raise ValidationFailed(
                "name the memories (cube_ids) or a query to retrieve them",
                [FieldError("body.cube_ids", "cube_ids or query is required")],
            )
        ref = self.activations.build(
            caller.tenant, namespace, memories, budget, reason=f"requested by {caller.principal}"
        )
        if ref is None:
            raise ValidationFailed(
                "no memory fits in the token budget",
                [FieldError("body.token_budget", "no memory fits")],
            )
        prefix = self.activations.store.load(caller.tenant, ref.key)
        fp = prefix.fingerprint
        return ActivationBuilt(
            cache_id=ref.key,
            namespace=namespace,
            model=fp.model_id if fp is not None else "",
            token_count=ref.token_count,
            sources=[str(s) for s in prefix.sources],
            record=ref.record,
        )

    # --- the scheduler's commands ----------------------------------------------------

    def handle(self, event: EventEnvelope) -> None:
        """A bus handler for COMMAND_TOPICS. Raising makes the bus redeliver."""
        if event.topic == BuildActivation.topic:
            self._build(event.tenant, BuildActivation.model_validate(event.data))
        elif event.topic == EvictActivation.topic:
            cmd = EvictActivation.model_validate(event.data)
            if self._done(cmd.command_id):
                return
            self.activations.evict(
                event.tenant,
                cmd.namespace,
                cmd.target_id,
                cmd.reason,
                command_id=cmd.command_id,
                cube_ids=cmd.cube_ids,
            )
            if cmd.reason == ERASED:  # the vault's erasure: the cache's blobs go too
                self.activations.store.delete(event.tenant, cmd.target_id)
            self._remember(cmd.command_id)

    def _build(self, tenant: str, cmd: BuildActivation) -> None:
        if self._done(cmd.command_id):
            return
        vault = self._need_vault()
        record = vault.current_activation(tenant, cmd.namespace)
        if record is not None and record.metadata.get("command_id") == cmd.command_id:
            self._remember(cmd.command_id)  # built before a restart: already confirmed
            return
        caller = Caller(tenant=tenant, principal=SYSTEM_PRINCIPAL)
        memories = []
        for cube_id in cmd.cube_ids:
            try:
                cube = vault.get_memory(caller, cube_id)
            except NotFound:
                continue  # deleted since the decision
            if _usable(cube, cmd.namespace):
                memories.append(_text(cube))
        budget = min(cmd.token_budget, self._cfg.kv_max_tokens)
        ref = self.activations.build(
            tenant, cmd.namespace, memories, budget, reason=cmd.reason, command_id=cmd.command_id
        )
        if ref is None:
            log.warning("BuildActivation %s: none of its memories is usable", cmd.command_id)
        self._remember(cmd.command_id)

    def _done(self, command_id: str) -> bool:
        with self._lock:
            return command_id in self._seen

    def _remember(self, command_id: str) -> None:
        with self._lock:
            self._seen[command_id] = None
            while len(self._seen) > _SEEN:
                del self._seen[next(iter(self._seen))]

    def _need_vault(self) -> VaultAPI:
        if self._vault is None:
            raise Unavailable("this inference service has no vault configured (MEMGRID_VAULT__URL)")
        return self._vault

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None


def _usable(cube: MemCube, namespace: str) -> bool:
    return cube.namespace == namespace and cube.tier == Tier.plaintext and cube.searchable


def _text(cube: MemCube) -> MemoryText:
    return MemoryText(cube.id, cube.version, cube.namespace, cube.text or "", 1.0)


def build_activation(
    settings: Settings, backend: ModelBackend, vault: VaultAPI | None, bus: EventBus | None
) -> ActivationService | None:
    """The activation side of a replica or of embedded mode; None when the backend
    has no KV caches (the remote OpenAI-compatible one)."""
    if not backend.supports_activation:
        return None
    from shared.adapters import create_blob_store

    from .kv import KVCacheStore, KVLru, NamespaceActivations

    store = KVCacheStore(
        create_blob_store(settings.blob), backend, KVLru(settings.inference.kv_cache_bytes)
    )
    return ActivationService(settings.inference, NamespaceActivations(store, vault, bus), vault)


def unsupported(backend: str) -> MemgridError:
    return MemgridError(
        detail=f"the {backend!r} backend has no activation memory (KV caches)",
        status=400,
        code="tier_unsupported",
        title="Bad request",
    )
