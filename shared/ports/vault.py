"""VaultAPI: what the interface asks of the vault, in process or over HTTP.

The interface only depends on this Protocol. Embedded mode hands it the vault
object itself; distributed mode an HTTP client of the vault's internal API.
Every call carries the caller's tenant; ids of another tenant raise NotFound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from shared.ports.access import AccessAdminAPI
from shared.schemas.adapters import AdapterDetails, AdapterRecord, AdapterState
from shared.schemas.api import (
    AccessReport,
    ApiKeyRecord,
    Caller,
    CubeDraft,
    LineageResponse,
    MemoryPatch,
    NamespaceCreate,
    NamespacePolicy,
    NamespaceRecord,
    SearchRequest,
    SearchResponse,
    TenantCreated,
)
from shared.schemas.compliance import ExportRecord, NamespaceExport
from shared.schemas.erasure import ErasureReport, ErasureRequest
from shared.schemas.memcube import ActivationPayload, LifecycleState, MemCube, ParametricPayload


@runtime_checkable
class VaultAPI(AccessAdminAPI, Protocol):
    def create_tenant(self, name: str) -> TenantCreated: ...
    def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...
    def create_namespace(self, caller: Caller, req: NamespaceCreate) -> NamespaceRecord: ...
    def list_namespaces(self, caller: Caller) -> list[NamespaceRecord]: ...
    def get_namespace(self, caller: Caller, namespace_id: str) -> NamespaceRecord: ...

    # Compliance (docs/compliance.md).
    def update_namespace_policy(
        self, caller: Caller, namespace_id: str, policy: NamespacePolicy
    ) -> NamespaceRecord:
        """Replaces the namespace's policy; 403 ``permission_denied`` unless the
        caller is a tenant admin. It applies from then on: new writes, and the
        next expiry run (legal hold, retention of existing memories)."""
        ...

    def export_namespace(self, caller: Caller, namespace_id: str) -> NamespaceExport:
        """The namespace's current memories, texts watermarked with a new export id,
        which is recorded (principal, time, count) before the export is returned."""
        ...

    def get_export(self, caller: Caller, export_id: str) -> ExportRecord:
        """An export's record; NotFound ``export_not_found`` for unknown or foreign ids."""
        ...

    def create_memories(
        self, caller: Caller, namespace_id: str, drafts: list[CubeDraft]
    ) -> list[MemCube]: ...
    def get_memory(self, caller: Caller, cube_id: str) -> MemCube: ...
    def update_memory(self, caller: Caller, cube_id: str, patch: MemoryPatch) -> MemCube: ...
    def delete_memory(self, caller: Caller, cube_id: str) -> None: ...
    def history(self, caller: Caller, cube_id: str) -> list[MemCube]: ...
    def lineage(self, caller: Caller, cube_id: str) -> LineageResponse: ...
    def search(
        self, caller: Caller, req: SearchRequest, *, publish_access: bool = True
    ) -> SearchResponse:
        """Hybrid search; publishes memory.accessed (channel search) per hit unless
        ``publish_access`` is false (inference reports what it used instead)."""
        ...

    def record_access(self, caller: Caller, report: AccessReport) -> None:
        """Publishes memory.accessed with ``report.channel`` for each item; any cube
        not readable by ``caller`` (another tenant's, deleted) raises NotFound and
        nothing is published."""
        ...

    # System operations (the scheduler's, for every tenant); see docs/lifecycle.md.
    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]:
        """Expires (reason "ttl") current cubes whose lifespan ended at or before
        ``now``, except held ones; one memory.expired per cube, even across
        concurrent calls. Returns the ids expired."""
        ...

    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube:
        """Moves a cube's lifecycle as shared.lifecycle allows (else IllegalTransition, 409)."""
        ...

    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube:
        """Two or more current, searchable plaintext cubes of one namespace become one
        new cube; the originals go to ``merged``, linked MERGED_INTO it."""
        ...

    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        """(id, cosine) of other searchable cubes of its namespace at or above ``threshold``."""
        ...

    # Activation memory (inference's); see services/vault/activations.py.
    def record_activation(
        self,
        tenant: str,
        namespace: str,
        payload: ActivationPayload,
        reason: str,
        command_id: str | None = None,
    ) -> MemCube:
        """Makes the KV cache ``payload`` describes the namespace's current one: an
        activation-tier cube version with DERIVED_FROM edges to each source (which
        must be plaintext cubes of that namespace, else NotFound), in one write.
        Idempotent for the cache already current. Never returned by search."""
        ...

    def current_activation(self, tenant: str, namespace: str) -> MemCube | None:
        """The namespace's current KV cache record, None when it has none."""
        ...

    def demote_activation(
        self, tenant: str, namespace: str, target_id: str, reason: str
    ) -> MemCube | None:
        """Marks the cache ``target_id`` no longer current; None when it was not."""
        ...

    # Parametric memory (the trainer's); see services/vault/adapters.py.
    def record_adapter(
        self,
        tenant: str,
        namespace: str,
        payload: ParametricPayload,
        details: AdapterDetails,
        reason: str,
    ) -> AdapterRecord:
        """Makes the adapter ``payload`` describes the namespace's serving one (the one
        serving before becomes ``superseded``): a parametric-tier version of the cube
        ``lora_<namespace>`` with DERIVED_FROM edges to each source (plaintext cubes of
        that namespace at those versions, else NotFound), in one write. Idempotent:
        recording an adapter id already recorded returns its record unchanged."""
        ...

    def get_adapter(self, tenant: str, adapter_id: str) -> AdapterRecord:
        """The adapter's latest record; NotFound ``adapter_not_found`` when unknown to
        this tenant."""
        ...

    def list_adapters(self, tenant: str, namespace: str | None = None) -> list[AdapterRecord]:
        """Every adapter of the tenant (or of one namespace), newest first."""
        ...

    def adapters_containing(self, tenant: str, cube_id: str) -> list[AdapterRecord]:
        """The adapters distilled from any version of ``cube_id`` (DERIVED_FROM edges)."""
        ...

    def set_adapter_state(
        self,
        tenant: str,
        adapter_id: str,
        state: AdapterState,
        reason: str,
        stale_sources: Sequence[str] = (),
    ) -> AdapterRecord:
        """Records a state change (serving → stale → withdrawn, ...); ``stale_sources``
        are added to the record's. A no-op returning the record when nothing changes."""
        ...

    # Right to erasure; see services/vault/erasure.py and docs/compliance.md.
    def erase(self, caller: Caller, req: ErasureRequest) -> ErasureReport:
        """Purges every version of the subject's plaintext memories, evicts the KV
        caches and withdraws (stale → retrained) the adapters built from them; the
        report is stored. 403 ``permission_denied`` unless the caller is a tenant
        admin; 409 ``legal_hold`` (nothing erased) when one of their namespaces is
        held. Repeating it erases nothing more."""
        ...

    def get_erasure(self, caller: Caller, erasure_id: str) -> ErasureReport:
        """A stored report; NotFound ``erasure_not_found`` when unknown to the tenant."""
        ...

    def ready(self) -> None:
        """Raises shared.errors.Unavailable when a dependency is down."""
        ...
