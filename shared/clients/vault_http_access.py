"""HttpVault's AccessAdminAPI methods: the vault's internal /principals, /keys,
/teams and /namespaces/{id}/grants routes (services/vault/app_access.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shared.schemas.access import (
    GrantCreate,
    GrantList,
    GrantRecord,
    KeyCreate,
    KeyCreated,
    KeyInfo,
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
from shared.schemas.api import Caller


def _seg(value: str) -> str:
    return quote(value, safe="")


class AccessClientMixin:
    def _call(
        self, method: str, path: str, caller: Caller | None = None, body: Any = None
    ) -> Any:  # provided by HttpVault
        raise NotImplementedError

    def create_principal(self, caller: Caller, req: PrincipalCreate) -> PrincipalCreated:
        return PrincipalCreated.model_validate(self._call("POST", "/principals", caller, req))

    def list_principals(self, caller: Caller) -> list[PrincipalRecord]:
        return PrincipalList.model_validate(self._call("GET", "/principals", caller)).principals

    def get_principal(self, caller: Caller, principal_id: str) -> PrincipalRecord:
        data = self._call("GET", f"/principals/{_seg(principal_id)}", caller)
        return PrincipalRecord.model_validate(data)

    def set_principal_disabled(
        self, caller: Caller, principal_id: str, disabled: bool
    ) -> PrincipalRecord:
        path = f"/principals/{_seg(principal_id)}"
        data = self._call("PATCH", path, caller, PrincipalPatch(disabled=disabled))
        return PrincipalRecord.model_validate(data)

    def create_key(self, caller: Caller, principal_id: str, req: KeyCreate) -> KeyCreated:
        path = f"/principals/{_seg(principal_id)}/keys"
        return KeyCreated.model_validate(self._call("POST", path, caller, req))

    def list_keys(self, caller: Caller, principal_id: str) -> list[KeyInfo]:
        path = f"/principals/{_seg(principal_id)}/keys"
        return KeyList.model_validate(self._call("GET", path, caller)).keys

    def rotate_key(self, caller: Caller, prefix: str, grace_seconds: int) -> KeyCreated:
        body = KeyRotate(grace_seconds=grace_seconds)
        data = self._call("POST", f"/keys/{_seg(prefix)}/rotate", caller, body)
        return KeyCreated.model_validate(data)

    def revoke_key(self, caller: Caller, prefix: str) -> None:
        self._call("DELETE", f"/keys/{_seg(prefix)}", caller)

    def create_team(self, caller: Caller, req: TeamCreate) -> TeamRecord:
        return TeamRecord.model_validate(self._call("POST", "/teams", caller, req))

    def list_teams(self, caller: Caller) -> list[TeamRecord]:
        return TeamList.model_validate(self._call("GET", "/teams", caller)).teams

    def set_team_member(
        self, caller: Caller, team_id: str, principal_id: str, member: bool
    ) -> TeamRecord:
        path = f"/teams/{_seg(team_id)}/members/{_seg(principal_id)}"
        return TeamRecord.model_validate(self._call("PUT" if member else "DELETE", path, caller))

    def grant(self, caller: Caller, namespace_id: str, req: GrantCreate) -> GrantRecord:
        path = f"/namespaces/{_seg(namespace_id)}/grants"
        return GrantRecord.model_validate(self._call("POST", path, caller, req))

    def list_grants(self, caller: Caller, namespace_id: str) -> list[GrantRecord]:
        path = f"/namespaces/{_seg(namespace_id)}/grants"
        return GrantList.model_validate(self._call("GET", path, caller)).grants

    def revoke_grant(self, caller: Caller, namespace_id: str, grantee: str) -> None:
        self._call("DELETE", f"/namespaces/{_seg(namespace_id)}/grants/{_seg(grantee)}", caller)
