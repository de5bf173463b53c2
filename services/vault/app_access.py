"""The vault's internal routes for principals, keys, teams and grants (HttpVault's
AccessClientMixin calls them; the public API is services/interface/routes_access.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.vault.app_deps import CallerDep, VaultDep
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


def add_access_routes(r: APIRouter) -> None:
    """Adds the routes to ``r`` (the internal router, behind the service token)."""

    @r.post("/principals", status_code=201)
    def create_principal(
        body: PrincipalCreate, caller: CallerDep, vault: VaultDep
    ) -> PrincipalCreated:
        return vault.create_principal(caller, body)

    @r.get("/principals")
    def list_principals(caller: CallerDep, vault: VaultDep) -> PrincipalList:
        return PrincipalList(principals=vault.list_principals(caller))

    @r.get("/principals/{principal_id}")
    def get_principal(principal_id: str, caller: CallerDep, vault: VaultDep) -> PrincipalRecord:
        return vault.get_principal(caller, principal_id)

    @r.patch("/principals/{principal_id}")
    def patch_principal(
        principal_id: str, body: PrincipalPatch, caller: CallerDep, vault: VaultDep
    ) -> PrincipalRecord:
        return vault.set_principal_disabled(caller, principal_id, body.disabled)

    @r.post("/principals/{principal_id}/keys", status_code=201)
    def create_key(
        principal_id: str, body: KeyCreate, caller: CallerDep, vault: VaultDep
    ) -> KeyCreated:
        return vault.create_key(caller, principal_id, body)

    @r.get("/principals/{principal_id}/keys")
    def list_keys(principal_id: str, caller: CallerDep, vault: VaultDep) -> KeyList:
        return KeyList(keys=vault.list_keys(caller, principal_id))

    @r.post("/keys/{prefix}/rotate", status_code=201)
    def rotate_key(prefix: str, body: KeyRotate, caller: CallerDep, vault: VaultDep) -> KeyCreated:
        return vault.rotate_key(caller, prefix, body.grace_seconds)

    @r.delete("/keys/{prefix}", status_code=204)
    def revoke_key(prefix: str, caller: CallerDep, vault: VaultDep) -> Response:
        vault.revoke_key(caller, prefix)
        return Response(status_code=204)

    @r.post("/teams", status_code=201)
    def create_team(body: TeamCreate, caller: CallerDep, vault: VaultDep) -> TeamRecord:
        return vault.create_team(caller, body)

    @r.get("/teams")
    def list_teams(caller: CallerDep, vault: VaultDep) -> TeamList:
        return TeamList(teams=vault.list_teams(caller))

    @r.put("/teams/{team_id}/members/{principal_id}")
    def add_member(
        team_id: str, principal_id: str, caller: CallerDep, vault: VaultDep
    ) -> TeamRecord:
        return vault.set_team_member(caller, team_id, principal_id, True)

    @r.delete("/teams/{team_id}/members/{principal_id}")
    def remove_member(
        team_id: str, principal_id: str, caller: CallerDep, vault: VaultDep
    ) -> TeamRecord:
        return vault.set_team_member(caller, team_id, principal_id, False)

    @r.post("/namespaces/{namespace_id}/grants", status_code=201)
    def grant(
        namespace_id: str, body: GrantCreate, caller: CallerDep, vault: VaultDep
    ) -> GrantRecord:
        return vault.grant(caller, namespace_id, body)

    @r.get("/namespaces/{namespace_id}/grants")
    def list_grants(namespace_id: str, caller: CallerDep, vault: VaultDep) -> GrantList:
        return GrantList(grants=vault.list_grants(caller, namespace_id))

    @r.delete("/namespaces/{namespace_id}/grants/{grantee}", status_code=204)
    def revoke_grant(
        namespace_id: str, grantee: str, caller: CallerDep, vault: VaultDep
    ) -> Response:
        vault.revoke_grant(caller, namespace_id, grantee)
        return Response(status_code=204)
