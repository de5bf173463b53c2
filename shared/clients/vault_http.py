"""HttpVault: the VaultAPI over the vault's internal HTTP API (distributed mode).

Errors come back as problem+json and are raised again as MemgridError with the
same status and code, so the interface answers exactly as in embedded mode. A
vault that cannot be reached (refused, timed out) raises Unavailable: the client
gets a 503 problem, never a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from opentelemetry.propagate import inject

from shared.clients.vault_http_access import AccessClientMixin
from shared.errors import FieldError, MemgridError, NotFound, Unavailable
from shared.schemas.activation import (
    ActivationCurrent,
    ActivationDemoteRequest,
    ActivationRecordRequest,
)
from shared.schemas.adapters import (
    AdapterDetails,
    AdapterList,
    AdapterRecord,
    AdapterRecordRequest,
    AdapterState,
    AdapterStateRequest,
)
from shared.schemas.api import (
    AccessReport,
    ApiKeyRecord,
    Caller,
    CubeDraft,
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
    ExpireDueRequest,
    ExpireDueResponse,
    MergeRequest,
    NearDuplicatesResponse,
    TransitionRequest,
)
from shared.schemas.memcube import ActivationPayload, LifecycleState, MemCube, ParametricPayload
from shared.settings import VaultClientSettings

PREFIX = "/internal/v1"


class HttpVault(AccessClientMixin):
    def __init__(self, cfg: VaultClientSettings, client: httpx.Client | None = None) -> None:
        """``client`` lets tests pass an in-process client (e.g. a TestClient of the vault app)."""
        self._http = client or httpx.Client(base_url=cfg.url.rstrip("/"), timeout=cfg.timeout_s)
        self._token = cfg.service_token.get_secret_value() if cfg.service_token else None

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, caller: Caller | None = None, body: Any = None) -> Any:
        headers: dict[str, str] = {}
        if self._token is not None:
            headers["X-Memgrid-Service-Token"] = self._token
        inject(headers)  # traceparent: the vault's spans join the interface's trace
        if caller is not None:
            headers["X-Memgrid-Tenant"] = caller.tenant
            headers["X-Memgrid-Principal"] = caller.principal
            headers["X-Memgrid-Role"] = caller.role
            if caller.key_prefix is not None:
                headers["X-Memgrid-Key-Prefix"] = caller.key_prefix
        content = body.model_dump_json() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            r = self._http.request(method, PREFIX + path, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"vault unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise _error(r)
        return r.json() if r.status_code != 204 else None

    def create_tenant(self, name: str) -> TenantCreated:
        return TenantCreated.model_validate(
            self._call("POST", "/tenants", None, TenantCreate(name=name))
        )

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        try:
            return ApiKeyRecord.model_validate(self._call("GET", f"/api-keys/{prefix}"))
        except MemgridError as exc:
            if exc.status == 404:
                return None
            raise

    def create_namespace(self, caller: Caller, req: NamespaceCreate) -> NamespaceRecord:
        return NamespaceRecord.model_validate(self._call("POST", "/namespaces", caller, req))

    def list_namespaces(self, caller: Caller) -> list[NamespaceRecord]:
        return NamespaceList.model_validate(self._call("GET", "/namespaces", caller)).namespaces

    def get_namespace(self, caller: Caller, namespace_id: str) -> NamespaceRecord:
        return NamespaceRecord.model_validate(
            self._call("GET", f"/namespaces/{_seg(namespace_id)}", caller)
        )

    def update_namespace_policy(
        self, caller: Caller, namespace_id: str, policy: NamespacePolicy
    ) -> NamespaceRecord:
        path = f"/namespaces/{_seg(namespace_id)}/policy"
        return NamespaceRecord.model_validate(self._call("PUT", path, caller, policy))

    def export_namespace(self, caller: Caller, namespace_id: str) -> NamespaceExport:
        path = f"/namespaces/{_seg(namespace_id)}/exports"
        return NamespaceExport.model_validate(self._call("POST", path, caller))

    def get_export(self, caller: Caller, export_id: str) -> ExportRecord:
        return ExportRecord.model_validate(self._call("GET", f"/exports/{_seg(export_id)}", caller))

    def create_memories(
        self, caller: Caller, namespace_id: str, drafts: list[CubeDraft]
    ) -> list[MemCube]:
        data = self._call(
            "POST", f"/namespaces/{_seg(namespace_id)}/cubes", caller, CubeDraftBatch(drafts=drafts)
        )
        return MemoriesResponse.model_validate(data).memories

    def get_memory(self, caller: Caller, cube_id: str) -> MemCube:
        return MemCube.model_validate(self._call("GET", f"/memories/{_seg(cube_id)}", caller))

    def update_memory(self, caller: Caller, cube_id: str, patch: MemoryPatch) -> MemCube:
        return MemCube.model_validate(
            self._call("PATCH", f"/memories/{_seg(cube_id)}", caller, patch)
        )

    def delete_memory(self, caller: Caller, cube_id: str) -> None:
        self._call("DELETE", f"/memories/{_seg(cube_id)}", caller)

    def history(self, caller: Caller, cube_id: str) -> list[MemCube]:
        data = self._call("GET", f"/memories/{_seg(cube_id)}/history", caller)
        return HistoryResponse.model_validate(data).versions

    def lineage(self, caller: Caller, cube_id: str) -> LineageResponse:
        data = self._call("GET", f"/memories/{_seg(cube_id)}/lineage", caller)
        return LineageResponse.model_validate(data)

    def search(
        self, caller: Caller, req: SearchRequest, *, publish_access: bool = True
    ) -> SearchResponse:
        path = "/search" if publish_access else "/search?access=none"
        return SearchResponse.model_validate(self._call("POST", path, caller, req))

    def record_access(self, caller: Caller, report: AccessReport) -> None:
        self._call("POST", "/access", caller, report)

    def erase(self, caller: Caller, req: ErasureRequest) -> ErasureReport:
        return ErasureReport.model_validate(self._call("POST", "/erasures", caller, req))

    def get_erasure(self, caller: Caller, erasure_id: str) -> ErasureReport:
        data = self._call("GET", f"/erasures/{_seg(erasure_id)}", caller)
        return ErasureReport.model_validate(data)

    # System operations: no caller; the tenant is part of the path. Bodies are
    # built unvalidated so that bad input gets the vault's 422 problem, exactly
    # as an in-process call gets the vault's ValidationFailed.

    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]:
        data = self._call(
            "POST",
            "/lifecycle/expire-due",
            None,
            ExpireDueRequest.model_construct(now=now, limit=limit),
        )
        return ExpireDueResponse.model_validate(data).expired

    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube:
        path = f"/tenants/{_seg(tenant)}/memories/{_seg(cube_id)}/transition"
        body = TransitionRequest.model_construct(to=to, reason=reason)
        return MemCube.model_validate(self._call("POST", path, None, body))

    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube:
        body = MergeRequest.model_construct(cube_ids=list(cube_ids), reason=reason)
        return MemCube.model_validate(
            self._call("POST", f"/tenants/{_seg(tenant)}/merges", None, body)
        )

    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        query = urlencode({"threshold": repr(float(threshold)), "limit": int(limit)})
        path = f"/tenants/{_seg(tenant)}/memories/{_seg(cube_id)}/near-duplicates?{query}"
        found = NearDuplicatesResponse.model_validate(self._call("GET", path)).duplicates
        return [(d.id, d.score) for d in found]

    def record_activation(
        self,
        tenant: str,
        namespace: str,
        payload: ActivationPayload,
        reason: str,
        command_id: str | None = None,
    ) -> MemCube:
        body = ActivationRecordRequest(payload=payload, reason=reason, command_id=command_id)
        path = f"/tenants/{_seg(tenant)}/namespaces/{_seg(namespace)}/activation"
        return MemCube.model_validate(self._call("POST", path, None, body))

    def current_activation(self, tenant: str, namespace: str) -> MemCube | None:
        path = f"/tenants/{_seg(tenant)}/namespaces/{_seg(namespace)}/activation"
        return ActivationCurrent.model_validate(self._call("GET", path)).cube

    def demote_activation(
        self, tenant: str, namespace: str, target_id: str, reason: str
    ) -> MemCube | None:
        body = ActivationDemoteRequest(target_id=target_id, reason=reason)
        path = f"/tenants/{_seg(tenant)}/namespaces/{_seg(namespace)}/activation/demote"
        return ActivationCurrent.model_validate(self._call("POST", path, None, body)).cube

    def record_adapter(
        self,
        tenant: str,
        namespace: str,
        payload: ParametricPayload,
        details: AdapterDetails,
        reason: str,
    ) -> AdapterRecord:
        body = AdapterRecordRequest.model_construct(
            namespace=namespace, payload=payload, details=details, reason=reason
        )
        path = f"/tenants/{_seg(tenant)}/adapters"
        return AdapterRecord.model_validate(self._call("POST", path, None, body))

    def get_adapter(self, tenant: str, adapter_id: str) -> AdapterRecord:
        path = f"/tenants/{_seg(tenant)}/adapters/{_seg(adapter_id)}"
        return AdapterRecord.model_validate(self._call("GET", path))

    def list_adapters(self, tenant: str, namespace: str | None = None) -> list[AdapterRecord]:
        path = f"/tenants/{_seg(tenant)}/adapters"
        if namespace is not None:
            path += "?" + urlencode({"namespace": namespace})
        return AdapterList.model_validate(self._call("GET", path)).adapters

    def adapters_containing(self, tenant: str, cube_id: str) -> list[AdapterRecord]:
        path = f"/tenants/{_seg(tenant)}/memories/{_seg(cube_id)}/adapters"
        return AdapterList.model_validate(self._call("GET", path)).adapters

    def set_adapter_state(
        self,
        tenant: str,
        adapter_id: str,
        state: AdapterState,
        reason: str,
        stale_sources: Sequence[str] = (),
    ) -> AdapterRecord:
        body = AdapterStateRequest.model_construct(
            state=state, reason=reason, stale_sources=list(stale_sources)
        )
        path = f"/tenants/{_seg(tenant)}/adapters/{_seg(adapter_id)}/state"
        return AdapterRecord.model_validate(self._call("POST", path, None, body))

    def ready(self) -> None:
        try:
            r = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise Unavailable(f"vault unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise _error(r)


def _seg(value: str) -> str:
    """One path segment: ids are opaque, so escape anything that could change the path."""
    from urllib.parse import quote

    return quote(value, safe="")


def _error(r: httpx.Response) -> MemgridError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code >= 500 and r.status_code != 503:
        return Unavailable(f"vault failed with {r.status_code}")
    if r.status_code == 404:
        # The same class the vault raised in process: callers catch NotFound.
        return NotFound(
            str(body.get("detail", r.reason_phrase)), str(body.get("code", "not_found"))
        )
    return MemgridError(
        detail=str(body.get("detail", r.reason_phrase)),
        errors=[FieldError(e["field"], e["message"]) for e in body.get("errors") or []],
        status=r.status_code,
        code=str(body.get("code", "error")),
        title=str(body.get("title", r.reason_phrase)),
    )
