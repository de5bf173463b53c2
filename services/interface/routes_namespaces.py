"""Namespaces: named memory spaces of the caller's tenant."""

from __future__ import annotations

from fastapi import APIRouter

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute, VaultDep
from services.interface.limits import check_id
from shared.http_problems import problem_responses
from shared.schemas.api import NamespaceCreate, NamespaceList, NamespaceRecord

router = APIRouter(prefix="/v1/namespaces", tags=["namespaces"], route_class=StrictJSONRoute)


@router.post(
    "",
    status_code=201,
    response_model=NamespaceRecord,
    summary="Create a namespace (tenant admins and members; the creator administers it)",
    responses=problem_responses(401, 403, 409, 413, 422, 429, 503),
)
def create_namespace(body: NamespaceCreate, caller: CallerDep, vault: VaultDep) -> NamespaceRecord:
    return vault.create_namespace(caller, body)


@router.get(
    "",
    response_model=NamespaceList,
    summary="List the namespaces the caller may read",
    responses=problem_responses(401, 429, 503),
)
def list_namespaces(caller: CallerDep, vault: VaultDep) -> NamespaceList:
    return NamespaceList(namespaces=vault.list_namespaces(caller))


@router.get(
    "/{namespace_id}",
    response_model=NamespaceRecord,
    summary="Get a namespace",
    responses=problem_responses(401, 404, 429, 503),
)
def get_namespace(namespace_id: str, caller: CallerDep, vault: VaultDep) -> NamespaceRecord:
    return vault.get_namespace(caller, check_id(namespace_id, "namespace"))
