"""The vault's internal HTTP API (distributed mode), built by :func:`create_app`.

The interface calls it through shared.clients.vault_http.HttpVault; the two
implement the same VaultAPI Protocol, so the interface cannot tell embedded from
distributed. It is internal: the caller's identity travels in X-Memgrid-* headers
set by the interface after authenticating the client, and the API must only be
reachable inside the deployment (NetworkPolicy in the Helm chart). When
``vault.service_token`` is set, every call must also present it.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response

from services.vault.app_access import add_access_routes
from services.vault.app_deps import CallerDep, VaultDep
from services.vault.service import Vault
from shared.errors import NotFound, Unauthorized
from shared.http_problems import install_problem_handlers
from shared.http_telemetry import HttpTelemetryMiddleware, add_metrics_route
from shared.schemas.activation import (
    ActivationCurrent,
    ActivationDemoteRequest,
    ActivationRecordRequest,
)
from shared.schemas.adapters import (
    AdapterList,
    AdapterRecord,
    AdapterRecordRequest,
    AdapterStateRequest,
)
from shared.schemas.api import (
    AccessReport,
    ApiKeyRecord,
    CubeDraftBatch,
    HistoryResponse,
    LineageResponse,
    MemoriesResponse,
    MemoryPatch,
    NamespaceCreate,
    NamespaceList,
    NamespacePolicy,
    NamespaceRecord,
    SearchRequest,
    SearchResponse,
    TenantCreate,
    TenantCreated,
)
from shared.schemas.compliance import ExportRecord, NamespaceExport
from shared.schemas.erasure import ErasureReport, ErasureRequest
from shared.schemas.lifecycle_api import (
    MAX_NEAR,
    ExpireDueRequest,
    ExpireDueResponse,
    MergeRequest,
    NearDuplicate,
    NearDuplicatesResponse,
    TransitionRequest,
)
from shared.schemas.memcube import MemCube
from shared.settings import Settings
from shared.telemetry import setup_tracing

PREFIX = "/internal/v1"


def _router(token: str | None) -> APIRouter:
    async def check_token(
        x_memgrid_service_token: Annotated[str | None, Header()] = None,
    ) -> None:
        if token is None:
            return
        given = (x_memgrid_service_token or "").encode()
        if not hmac.compare_digest(given, token.encode()):
            raise Unauthorized("missing or invalid service token")

    r = APIRouter(prefix=PREFIX, dependencies=[Depends(check_token)])
    add_access_routes(r)

    @r.post("/tenants", status_code=201)
    def create_tenant(body: TenantCreate, vault: VaultDep) -> TenantCreated:
        return vault.create_tenant(body.name)

    @r.get("/api-keys/{prefix}")
    def find_api_key(prefix: str, vault: VaultDep) -> ApiKeyRecord:
        rec = vault.find_api_key(prefix)
        if rec is None:
            raise NotFound("no such key", code="api_key_not_found")
        return rec

    @r.post("/namespaces", status_code=201)
    def create_namespace(
        body: NamespaceCreate, caller: CallerDep, vault: VaultDep
    ) -> NamespaceRecord:
        return vault.create_namespace(caller, body)

    @r.get("/namespaces")
    def list_namespaces(caller: CallerDep, vault: VaultDep) -> NamespaceList:
        return NamespaceList(namespaces=vault.list_namespaces(caller))

    @r.get("/namespaces/{namespace_id}")
    def get_namespace(namespace_id: str, caller: CallerDep, vault: VaultDep) -> NamespaceRecord:
        return vault.get_namespace(caller, namespace_id)

    # Compliance (docs/compliance.md): the whole new policy; the interface merges patches.
    @r.put("/namespaces/{namespace_id}/policy")
    def update_namespace_policy(
        namespace_id: str, body: NamespacePolicy, caller: CallerDep, vault: VaultDep
    ) -> NamespaceRecord:
        return vault.update_namespace_policy(caller, namespace_id, body)

    @r.post("/namespaces/{namespace_id}/exports", status_code=201)
    def export_namespace(namespace_id: str, caller: CallerDep, vault: VaultDep) -> NamespaceExport:
        return vault.export_namespace(caller, namespace_id)

    @r.get("/exports/{export_id}")
    def get_export(export_id: str, caller: CallerDep, vault: VaultDep) -> ExportRecord:
        return vault.get_export(caller, export_id)

    @r.post("/namespaces/{namespace_id}/cubes", status_code=201)
    def create_memories(
        namespace_id: str, body: CubeDraftBatch, caller: CallerDep, vault: VaultDep
    ) -> MemoriesResponse:
        return MemoriesResponse(memories=vault.create_memories(caller, namespace_id, body.drafts))

    @r.get("/memories/{cube_id}")
    def get_memory(cube_id: str, caller: CallerDep, vault: VaultDep) -> MemCube:
        return vault.get_memory(caller, cube_id)

    @r.patch("/memories/{cube_id}")
    def update_memory(
        cube_id: str, body: MemoryPatch, caller: CallerDep, vault: VaultDep
    ) -> MemCube:
        return vault.update_memory(caller, cube_id, body)

    @r.delete("/memories/{cube_id}", status_code=204)
    def delete_memory(cube_id: str, caller: CallerDep, vault: VaultDep) -> Response:
        vault.delete_memory(caller, cube_id)
        return Response(status_code=204)

    @r.get("/memories/{cube_id}/history")
    def history(cube_id: str, caller: CallerDep, vault: VaultDep) -> HistoryResponse:
        return HistoryResponse(versions=vault.history(caller, cube_id))

    @r.get("/memories/{cube_id}/lineage")
    def lineage(cube_id: str, caller: CallerDep, vault: VaultDep) -> LineageResponse:
        return vault.lineage(caller, cube_id)

    @r.post("/search")
    def search(
        body: SearchRequest,
        caller: CallerDep,
        vault: VaultDep,
        access: Annotated[Literal["publish", "none"], Query()] = "publish",
    ) -> SearchResponse:
        return vault.search(caller, body, publish_access=access == "publish")

    @r.post("/erasures", status_code=201)
    def erase(body: ErasureRequest, caller: CallerDep, vault: VaultDep) -> ErasureReport:
        return vault.erase(caller, body)

    @r.get("/erasures/{erasure_id}")
    def get_erasure(erasure_id: str, caller: CallerDep, vault: VaultDep) -> ErasureReport:
        return vault.get_erasure(caller, erasure_id)

    @r.post("/access", status_code=204)
    def record_access(body: AccessReport, caller: CallerDep, vault: VaultDep) -> Response:
        vault.record_access(caller, body)
        return Response(status_code=204)

    # System operations (the scheduler's): the tenant is in the path, no caller.
    @r.post("/lifecycle/expire-due")
    def expire_due(body: ExpireDueRequest, vault: VaultDep) -> ExpireDueResponse:
        return ExpireDueResponse(expired=vault.expire_due(body.now, body.limit))

    @r.post("/tenants/{tenant}/memories/{cube_id}/transition")
    def transition(tenant: str, cube_id: str, body: TransitionRequest, vault: VaultDep) -> MemCube:
        return vault.transition(tenant, cube_id, body.to, body.reason)

    @r.post("/tenants/{tenant}/merges", status_code=201)
    def merge(tenant: str, body: MergeRequest, vault: VaultDep) -> MemCube:
        return vault.merge(tenant, body.cube_ids, body.reason)

    @r.get("/tenants/{tenant}/memories/{cube_id}/near-duplicates")
    def near_duplicates(
        tenant: str,
        cube_id: str,
        vault: VaultDep,
        threshold: Annotated[float, Query(ge=-1.0, le=1.0)],
        limit: Annotated[int, Query(ge=1, le=MAX_NEAR)] = 5,
    ) -> NearDuplicatesResponse:
        found = vault.near_duplicates(tenant, cube_id, threshold, limit)
        return NearDuplicatesResponse(duplicates=[NearDuplicate(id=i, score=s) for i, s in found])

    # Activation memory (the inference service's): tenant and namespace in the path.
    @r.post("/tenants/{tenant}/namespaces/{namespace}/activation")
    def record_activation(
        tenant: str, namespace: str, body: ActivationRecordRequest, vault: VaultDep
    ) -> MemCube:
        return vault.record_activation(
            tenant, namespace, body.payload, body.reason, body.command_id
        )

    @r.get("/tenants/{tenant}/namespaces/{namespace}/activation")
    def current_activation(tenant: str, namespace: str, vault: VaultDep) -> ActivationCurrent:
        return ActivationCurrent(cube=vault.current_activation(tenant, namespace))

    @r.post("/tenants/{tenant}/namespaces/{namespace}/activation/demote")
    def demote_activation(
        tenant: str, namespace: str, body: ActivationDemoteRequest, vault: VaultDep
    ) -> ActivationCurrent:
        return ActivationCurrent(
            cube=vault.demote_activation(tenant, namespace, body.target_id, body.reason)
        )

    # Parametric memory (the trainer's): the tenant in the path, no caller.
    @r.post("/tenants/{tenant}/adapters")
    def record_adapter(tenant: str, body: AdapterRecordRequest, vault: VaultDep) -> AdapterRecord:
        return vault.record_adapter(tenant, body.namespace, body.payload, body.details, body.reason)

    @r.get("/tenants/{tenant}/adapters")
    def list_adapters(
        tenant: str, vault: VaultDep, namespace: Annotated[str | None, Query()] = None
    ) -> AdapterList:
        return AdapterList(adapters=vault.list_adapters(tenant, namespace))

    @r.get("/tenants/{tenant}/adapters/{adapter_id}")
    def get_adapter(tenant: str, adapter_id: str, vault: VaultDep) -> AdapterRecord:
        return vault.get_adapter(tenant, adapter_id)

    @r.post("/tenants/{tenant}/adapters/{adapter_id}/state")
    def set_adapter_state(
        tenant: str, adapter_id: str, body: AdapterStateRequest, vault: VaultDep
    ) -> AdapterRecord:
        return vault.set_adapter_state(
            tenant, adapter_id, body.state, body.reason, body.stale_sources
        )

    @r.get("/tenants/{tenant}/memories/{cube_id}/adapters")
    def adapters_containing(tenant: str, cube_id: str, vault: VaultDep) -> AdapterList:
        return AdapterList(adapters=vault.adapters_containing(tenant, cube_id))

    return r


def create_app(settings: Settings, vault: Vault) -> FastAPI:
    setup_tracing(settings.telemetry, "vault")
    app = FastAPI(title="memgrid vault (internal)", version="1", docs_url=None, redoc_url=None)
    app.state.vault = vault
    install_problem_handlers(app)
    token = settings.vault.service_token
    app.include_router(_router(token.get_secret_value() if token else None))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        vault.ready()
        return {"status": "ready"}

    add_metrics_route(app)
    # Continues the caller's traceparent: the vault's spans join the interface's trace.
    app.add_middleware(HttpTelemetryMiddleware, service="vault")
    return app
