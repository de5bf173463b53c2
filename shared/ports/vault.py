"""VaultAPI: what the interface asks of the vault, in process or over HTTP.

The interface only depends on this Protocol. Embedded mode hands it the vault
object itself; distributed mode an HTTP client of the vault's internal API.
Every call carries the caller's tenant; ids of another tenant raise NotFound.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shared.schemas.api import (
    ApiKeyRecord,
    Caller,
    CubeDraft,
    LineageResponse,
    MemoryPatch,
    NamespaceCreate,
    NamespaceRecord,
    SearchRequest,
    SearchResponse,
    TenantCreated,
)
from shared.schemas.memcube import MemCube


@runtime_checkable
class VaultAPI(Protocol):
    def create_tenant(self, name: str) -> TenantCreated: ...
    def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...
    def create_namespace(self, caller: Caller, req: NamespaceCreate) -> NamespaceRecord: ...
    def list_namespaces(self, caller: Caller) -> list[NamespaceRecord]: ...
    def get_namespace(self, caller: Caller, namespace_id: str) -> NamespaceRecord: ...
    def create_memories(
        self, caller: Caller, namespace_id: str, drafts: list[CubeDraft]
    ) -> list[MemCube]: ...
    def get_memory(self, caller: Caller, cube_id: str) -> MemCube: ...
    def update_memory(self, caller: Caller, cube_id: str, patch: MemoryPatch) -> MemCube: ...
    def delete_memory(self, caller: Caller, cube_id: str) -> None: ...
    def history(self, caller: Caller, cube_id: str) -> list[MemCube]: ...
    def lineage(self, caller: Caller, cube_id: str) -> LineageResponse: ...
    def search(self, caller: Caller, req: SearchRequest) -> SearchResponse: ...
    def ready(self) -> None:
        """Raises shared.errors.Unavailable when a dependency is down."""
        ...
