"""Principals, API keys, teams and namespace grants (docs/access-control.md).

The vault decides every request (services/vault/access_admin.py); these routes
check ids and shapes. Keys are shown once, in the answer that creates them.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute, VaultDep
from services.interface.limits import check_id
from shared.http_problems import problem_responses
from shared.schemas.access import (
    GrantCreate,
    GrantList,
    GrantRecord,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyRotate,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalList,
    PrincipalPatch,
    PrincipalRecord,
    TeamCreate,
    TeamList,
    TeamRecord,
)

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)
_READ = problem_responses(401, 403, 404, 429, 503)
_WRITE = problem_responses(400, 401, 403, 404, 413, 422, 429, 503)


@router.post(
    "/principals",
    status_code=201,
    tags=["access"],
    summary="Create a principal (user, agent, service account) and its first key (tenant admin)",
    responses=_WRITE,
)
def create_principal(body: PrincipalCreate, caller: CallerDep, vault: VaultDep) -> PrincipalCreated:
    return vault.create_principal(caller, body)


@router.get(
    "/principals", tags=["access"], summary="List principals (tenant admin)", responses=_READ
)
def list_principals(caller: CallerDep, vault: VaultDep) -> PrincipalList:
    return PrincipalList(principals=vault.list_principals(caller))


@router.get("/principals/{principal_id}", tags=["access"], summary="A principal", responses=_READ)
def get_principal(principal_id: str, caller: CallerDep, vault: VaultDep) -> PrincipalRecord:
    return vault.get_principal(caller, check_id(principal_id, "principal"))


@router.patch(
    "/principals/{principal_id}",
    tags=["access"],
    summary="Disable (revokes its keys) or enable a principal (tenant admin)",
    responses=_WRITE,
)
def patch_principal(
    principal_id: str, body: PrincipalPatch, caller: CallerDep, vault: VaultDep
) -> PrincipalRecord:
    return vault.set_principal_disabled(caller, check_id(principal_id, "principal"), body.disabled)


@router.post(
    "/principals/{principal_id}/keys",
    status_code=201,
    tags=["access"],
    summary="Create an API key, optionally scoped to namespaces and permissions, expiring",
    responses=_WRITE,
)
def create_key(
    principal_id: str, body: KeyCreate, caller: CallerDep, vault: VaultDep
) -> KeyCreated:
    return vault.create_key(caller, check_id(principal_id, "principal"), body)


@router.get(
    "/principals/{principal_id}/keys",
    tags=["access"],
    summary="A principal's keys (never the secrets)",
    responses=_READ,
)
def list_keys(principal_id: str, caller: CallerDep, vault: VaultDep) -> KeyList:
    return KeyList(keys=vault.list_keys(caller, check_id(principal_id, "principal")))


@router.post(
    "/keys/{prefix}/rotate",
    status_code=201,
    tags=["access"],
    summary="Rotate a key: a new key with the same scope; the old one expires after the grace",
    responses=_WRITE,
)
def rotate_key(prefix: str, body: KeyRotate, caller: CallerDep, vault: VaultDep) -> KeyCreated:
    return vault.rotate_key(caller, check_id(prefix, "key"), body.grace_seconds)


@router.delete(
    "/keys/{prefix}", status_code=204, tags=["access"], summary="Revoke a key", responses=_READ
)
def revoke_key(prefix: str, caller: CallerDep, vault: VaultDep) -> Response:
    vault.revoke_key(caller, check_id(prefix, "key"))
    return Response(status_code=204)


@router.post(
    "/teams", status_code=201, tags=["access"], summary="Create a team (tenant admin)",
    responses=_WRITE,
)  # fmt: skip
def create_team(body: TeamCreate, caller: CallerDep, vault: VaultDep) -> TeamRecord:
    return vault.create_team(caller, body)


@router.get(
    "/teams", tags=["access"], summary="Teams (all for admins, one's own otherwise)",
    responses=_READ,
)  # fmt: skip
def list_teams(caller: CallerDep, vault: VaultDep) -> TeamList:
    return TeamList(teams=vault.list_teams(caller))


@router.put(
    "/teams/{team_id}/members/{principal_id}",
    tags=["access"],
    summary="Add a member to a team (tenant admin)",
    responses=_READ,
)
def add_member(team_id: str, principal_id: str, caller: CallerDep, vault: VaultDep) -> TeamRecord:
    return vault.set_team_member(
        caller, check_id(team_id, "team"), check_id(principal_id, "principal"), True
    )


@router.delete(
    "/teams/{team_id}/members/{principal_id}",
    tags=["access"],
    summary="Remove a member from a team (tenant admin)",
    responses=_READ,
)
def remove_member(
    team_id: str, principal_id: str, caller: CallerDep, vault: VaultDep
) -> TeamRecord:
    return vault.set_team_member(
        caller, check_id(team_id, "team"), check_id(principal_id, "principal"), False
    )


@router.post(
    "/namespaces/{namespace_id}/grants",
    status_code=201,
    tags=["namespaces"],
    summary="Share a namespace: grant permissions to a principal or a team (share or admin)",
    responses=_WRITE,
)
def grant(namespace_id: str, body: GrantCreate, caller: CallerDep, vault: VaultDep) -> GrantRecord:
    return vault.grant(caller, check_id(namespace_id, "namespace"), body)


@router.get(
    "/namespaces/{namespace_id}/grants",
    tags=["namespaces"],
    summary="Who the namespace is shared with (share or admin)",
    responses=_READ,
)
def list_grants(namespace_id: str, caller: CallerDep, vault: VaultDep) -> GrantList:
    return GrantList(grants=vault.list_grants(caller, check_id(namespace_id, "namespace")))


@router.delete(
    "/namespaces/{namespace_id}/grants/{grantee}",
    status_code=204,
    tags=["namespaces"],
    summary="Revoke a grant (share for read/write grants, admin for any)",
    responses=_READ,
)
def revoke_grant(namespace_id: str, grantee: str, caller: CallerDep, vault: VaultDep) -> Response:
    vault.revoke_grant(caller, check_id(namespace_id, "namespace"), check_id(grantee, "grantee"))
    return Response(status_code=204)
