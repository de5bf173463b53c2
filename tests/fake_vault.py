"""An in-memory VaultAPI for interface tests that need to control the vault.

API behaviour over the real vault is tested through ``api_client`` (tests/conftest.py);
this fake exists for what the real one cannot easily do on demand: fail, be down,
or record exactly what the interface handed it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.errors import NotFound, Unavailable
from shared.schemas.api import (
    AccessReport,
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
from shared.schemas.memcube import ActivationPayload, MemCube, PlaintextPayload
from shared.security import generate_api_key


def _now() -> datetime:
    return datetime.now(UTC)


class FakeVault:
    def __init__(self) -> None:
        self.keys: dict[str, ApiKeyRecord] = {}
        self.namespaces: dict[str, NamespaceRecord] = {}
        self.cubes: dict[str, MemCube] = {}
        self.drafts: list[CubeDraft] = []
        self.down = False
        self.activations: dict[tuple[str, str], MemCube] = {}
        self.explode: Exception | None = None

    def _check(self) -> None:
        if self.explode is not None:
            raise self.explode

    def create_tenant(self, name: str) -> TenantCreated:
        tenant = "t_" + uuid.uuid4().hex[:12]
        key, prefix, key_hash = generate_api_key()
        self.keys[prefix] = ApiKeyRecord(
            prefix=prefix, key_hash=key_hash, tenant=tenant, principal="admin", created_at=_now()
        )
        return TenantCreated(id=tenant, name=name, api_key=key)

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        return self.keys.get(prefix)

    def create_namespace(self, caller: Caller, req: NamespaceCreate) -> NamespaceRecord:
        ns = NamespaceRecord(
            id="ns_" + uuid.uuid4().hex[:12],
            tenant=caller.tenant,
            name=req.name,
            description=req.description,
            created_at=_now(),
        )
        self.namespaces[ns.id] = ns
        return ns

    def list_namespaces(self, caller: Caller) -> list[NamespaceRecord]:
        return [n for n in self.namespaces.values() if n.tenant == caller.tenant]

    def get_namespace(self, caller: Caller, namespace_id: str) -> NamespaceRecord:
        self._check()
        ns = self.namespaces.get(namespace_id)
        if ns is None or ns.tenant != caller.tenant:
            raise NotFound("namespace not found")
        return ns

    def create_memories(
        self, caller: Caller, namespace_id: str, drafts: list[CubeDraft]
    ) -> list[MemCube]:
        self.get_namespace(caller, namespace_id)
        self.drafts.extend(drafts)
        out = []
        for d in drafts:
            now = _now()
            cube = MemCube(
                id="m_" + uuid.uuid4().hex[:12],
                version=1,
                tenant=caller.tenant,
                namespace=namespace_id,
                created_at=now,
                updated_at=now,
                event_time=d.event_time,
                origin=d.origin,
                semantic_type=d.semantic_type,
                tags=d.tags,
                sources=d.sources,
                metadata=d.metadata,
                payload=PlaintextPayload(text=d.text),
            )
            self.cubes[cube.id] = cube
            out.append(cube)
        return out

    def get_memory(self, caller: Caller, cube_id: str) -> MemCube:
        self._check()
        cube = self.cubes.get(cube_id)
        if cube is None or cube.tenant != caller.tenant:
            raise NotFound("memory not found")
        return cube

    def update_memory(self, caller: Caller, cube_id: str, patch: MemoryPatch) -> MemCube:
        old = self.get_memory(caller, cube_id)
        changes = patch.model_dump(exclude_none=True)
        text = changes.pop("text", None)
        if text is not None:
            changes["payload"] = PlaintextPayload(text=text)
        new = old.model_copy(update={**changes, "version": old.version + 1, "updated_at": _now()})
        self.cubes[cube_id] = new
        return new

    def delete_memory(self, caller: Caller, cube_id: str) -> None:
        self.get_memory(caller, cube_id)
        del self.cubes[cube_id]

    def history(self, caller: Caller, cube_id: str) -> list[MemCube]:
        return [self.get_memory(caller, cube_id)]

    def lineage(self, caller: Caller, cube_id: str) -> LineageResponse:
        self.get_memory(caller, cube_id)
        return LineageResponse(cube=cube_id, edges=[])

    def search(
        self, caller: Caller, req: SearchRequest, *, publish_access: bool = True
    ) -> SearchResponse:
        self._check()
        return SearchResponse(results=[])

    def record_access(self, caller: Caller, report: AccessReport) -> None:
        self._check()
        for item in report.items:
            self.get_memory(caller, item.cube_id)

    # Activation records: the current payload per (tenant, namespace), no graph.
    def record_activation(
        self,
        tenant: str,
        namespace: str,
        payload: ActivationPayload,
        reason: str,
        command_id: str | None = None,
    ) -> MemCube:
        self._check()
        now = _now()
        cube = MemCube(
            id=f"kv_{namespace}",
            version=1,
            tenant=tenant,
            namespace=namespace,
            created_at=now,
            updated_at=now,
            payload=payload,
        )
        self.activations[(tenant, namespace)] = cube
        return cube

    def current_activation(self, tenant: str, namespace: str) -> MemCube | None:
        self._check()
        return self.activations.get((tenant, namespace))

    def demote_activation(
        self, tenant: str, namespace: str, target_id: str, reason: str
    ) -> MemCube | None:
        cube = self.activations.get((tenant, namespace))
        if cube is None or getattr(cube.payload, "manifest_key", None) != target_id:
            return None
        return self.activations.pop((tenant, namespace))

    def ready(self) -> None:
        if self.down:
            raise Unavailable("graph store is down")
        self._check()
