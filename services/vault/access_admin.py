"""Managing principals, API keys, teams and grants (the vault's side of /v1/principals,
/v1/keys, /v1/teams and /v1/namespaces/{id}/grants).

Who may do what: tenant admins manage principals and teams; a principal manages
its own keys (a key never carries more than its principal's role and grants);
``share`` on a namespace lets one grant and revoke read and write on it,
``admin`` anything. Ids of another tenant are NotFound.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from services.vault.access import GRANT, PRINCIPAL, TEAM, AccessControl, grant_id
from shared.errors import FieldError, Forbidden, NotFound, ValidationFailed
from shared.ports.graph import GraphStore
from shared.schemas.access import (
    GrantCreate,
    GrantRecord,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalRecord,
    TeamCreate,
    TeamRecord,
)
from shared.schemas.api import ApiKeyRecord, Caller
from shared.security import generate_api_key

_SHARE_GRANTABLE = frozenset({"read", "write"})


def key_info(key: ApiKeyRecord) -> KeyInfo:
    return KeyInfo(
        prefix=key.prefix,
        principal=key.principal,
        role=key.role,
        namespaces=key.namespaces,
        permissions=key.permissions,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked=key.revoked,
    )


class AccessAdmin:
    def __init__(
        self, store: GraphStore, access: AccessControl, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._access = access
        self._clock = clock

    # --- principals ------------------------------------------------------------------

    def create_principal(self, caller: Caller, req: PrincipalCreate) -> PrincipalCreated:
        self._access.require_role(caller, "tenant_admin")
        p = PrincipalRecord(
            id=f"p_{uuid.uuid4().hex}",
            tenant=caller.tenant,
            name=req.name,
            kind=req.kind,
            role=req.role,
            created_at=self._clock(),
        )
        self._store.put_access_doc(caller.tenant, PRINCIPAL, p.id, p.model_dump_json())
        created = self._new_key(caller.tenant, p.id, p.role, KeyCreate())
        return PrincipalCreated(principal=p, key_prefix=created.key.prefix, api_key=created.api_key)

    def list_principals(self, caller: Caller) -> list[PrincipalRecord]:
        self._access.require_role(caller, "tenant_admin")
        docs = self._store.list_access_docs(caller.tenant, PRINCIPAL)
        return [PrincipalRecord.model_validate_json(d) for d in docs]

    def get_principal(self, caller: Caller, principal_id: str) -> PrincipalRecord:
        if principal_id != caller.principal:
            self._access.require_role(caller, "tenant_admin")
        return self._principal(caller.tenant, principal_id)

    def set_principal_disabled(
        self, caller: Caller, principal_id: str, disabled: bool
    ) -> PrincipalRecord:
        """Disabling revokes every key of the principal (they stay revoked after an enable)."""
        self._access.require_role(caller, "tenant_admin")
        p = self._principal(caller.tenant, principal_id).model_copy(update={"disabled": disabled})
        self._store.put_access_doc(caller.tenant, PRINCIPAL, p.id, p.model_dump_json())
        if disabled:
            for key in self._store.list_api_keys(caller.tenant, p.id):
                self._store.put_api_key(key.model_copy(update={"revoked": True}))
        return p

    def _principal(self, tenant: str, principal_id: str) -> PrincipalRecord:
        doc = self._store.get_access_doc(tenant, PRINCIPAL, principal_id)
        if doc is None:
            raise NotFound(f"principal {principal_id!r} not found", code="principal_not_found")
        return PrincipalRecord.model_validate_json(doc)

    # --- keys ------------------------------------------------------------------------

    def _may_manage_keys_of(self, caller: Caller, principal_id: str) -> None:
        if principal_id != caller.principal:
            self._access.require_role(caller, "tenant_admin")

    def create_key(self, caller: Caller, principal_id: str, req: KeyCreate) -> KeyCreated:
        self._may_manage_keys_of(caller, principal_id)
        p = self._principal(caller.tenant, principal_id)
        if p.disabled:
            raise Forbidden(f"principal {principal_id!r} is disabled", code="principal_disabled")
        for i, ns in enumerate(req.namespaces or []):
            if self._store.get_namespace(caller.tenant, ns) is None:
                raise ValidationFailed(
                    f"namespace {ns!r} not found",
                    [FieldError(f"body.namespaces.{i}", "no such namespace")],
                )
        if req.expires_at is not None and req.expires_at <= self._clock():
            raise ValidationFailed(
                "expires_at is in the past",
                [FieldError("body.expires_at", "must be in the future")],
            )
        return self._new_key(caller.tenant, p.id, p.role, req)

    def _new_key(self, tenant: str, principal: str, role: str, req: KeyCreate) -> KeyCreated:
        key, prefix, key_hash = generate_api_key()
        record = ApiKeyRecord(
            prefix=prefix,
            key_hash=key_hash,
            tenant=tenant,
            principal=principal,
            role=role,
            created_at=self._clock(),
            expires_at=req.expires_at,
            namespaces=list(dict.fromkeys(req.namespaces)) if req.namespaces is not None else None,
            permissions=list(dict.fromkeys(req.permissions)) if req.permissions else None,
        )
        self._store.put_api_key(record)
        return KeyCreated(key=key_info(record), api_key=key)

    def list_keys(self, caller: Caller, principal_id: str) -> list[KeyInfo]:
        self._may_manage_keys_of(caller, principal_id)
        if principal_id != caller.principal:
            self._principal(caller.tenant, principal_id)  # 404 for ids of other tenants
        return [key_info(k) for k in self._store.list_api_keys(caller.tenant, principal_id)]

    def _key(self, caller: Caller, prefix: str) -> ApiKeyRecord:
        key = self._store.find_api_key(prefix)
        if key is None or key.tenant != caller.tenant:
            raise NotFound(f"key {prefix!r} not found", code="key_not_found")
        try:
            self._may_manage_keys_of(caller, key.principal)
        except Forbidden:
            # Another principal's key is not revealed to a non-admin either.
            raise NotFound(f"key {prefix!r} not found", code="key_not_found") from None
        return key

    def rotate_key(self, caller: Caller, prefix: str, grace_seconds: int) -> KeyCreated:
        """A new key with the same principal and scope; the old one expires after the grace."""
        old = self._key(caller, prefix)
        if old.revoked:
            raise Forbidden(f"key {prefix!r} is revoked", code="key_revoked")
        now = self._clock()
        created = self._new_key(
            caller.tenant,
            old.principal,
            old.role,
            KeyCreate(
                namespaces=old.namespaces,
                permissions=old.permissions,  # type: ignore[arg-type]
                expires_at=old.expires_at,
            ),
        )
        ends = now + timedelta(seconds=grace_seconds)
        if old.expires_at is None or old.expires_at > ends:
            self._store.put_api_key(old.model_copy(update={"expires_at": ends}))
        return created

    def revoke_key(self, caller: Caller, prefix: str) -> None:
        key = self._key(caller, prefix)
        self._store.put_api_key(key.model_copy(update={"revoked": True}))

    # --- teams -----------------------------------------------------------------------

    def create_team(self, caller: Caller, req: TeamCreate) -> TeamRecord:
        self._access.require_role(caller, "tenant_admin")
        team = TeamRecord(
            id=f"team_{uuid.uuid4().hex}",
            tenant=caller.tenant,
            name=req.name,
            created_at=self._clock(),
        )
        self._store.put_access_doc(caller.tenant, TEAM, team.id, team.model_dump_json())
        return team

    def list_teams(self, caller: Caller) -> list[TeamRecord]:
        docs = self._store.list_access_docs(caller.tenant, TEAM)
        teams = [TeamRecord.model_validate_json(d) for d in docs]
        if self._access.effective(caller).role == "tenant_admin":
            return teams
        return [t for t in teams if caller.principal in t.members]

    def set_team_member(
        self, caller: Caller, team_id: str, principal_id: str, member: bool
    ) -> TeamRecord:
        self._access.require_role(caller, "tenant_admin")
        doc = self._store.get_access_doc(caller.tenant, TEAM, team_id)
        if doc is None:
            raise NotFound(f"team {team_id!r} not found", code="team_not_found")
        self._principal(caller.tenant, principal_id)
        team = TeamRecord.model_validate_json(doc)
        members = [m for m in team.members if m != principal_id]
        if member:
            members.append(principal_id)
        team = team.model_copy(update={"members": members})
        self._store.put_access_doc(caller.tenant, TEAM, team.id, team.model_dump_json())
        return team

    # --- grants ----------------------------------------------------------------------

    def grant(self, caller: Caller, namespace_id: str, req: GrantCreate) -> GrantRecord:
        perms = self._access.permissions(caller, namespace_id)
        self._access.require(caller, namespace_id, "share")
        wanted = set(req.permissions)
        if "admin" not in perms and not wanted <= _SHARE_GRANTABLE:
            raise Forbidden(
                "only a namespace admin may grant share or admin", code="permission_denied"
            )
        if self._store.get_access_doc(caller.tenant, PRINCIPAL, req.grantee) is not None:
            kind = "principal"
        elif self._store.get_access_doc(caller.tenant, TEAM, req.grantee) is not None:
            kind = "team"
        else:
            raise NotFound(f"grantee {req.grantee!r} not found", code="grantee_not_found")
        record = GrantRecord(
            tenant=caller.tenant,
            namespace=namespace_id,
            grantee=req.grantee,
            grantee_kind=kind,  # type: ignore[arg-type]
            permissions=sorted(wanted),
            granted_by=caller.principal,
            created_at=self._clock(),
        )
        self._store.put_access_doc(
            caller.tenant, GRANT, grant_id(namespace_id, req.grantee), record.model_dump_json()
        )
        return record

    def list_grants(self, caller: Caller, namespace_id: str) -> list[GrantRecord]:
        self._access.require(caller, namespace_id, "share")
        return self._access.grants(caller.tenant, namespace_id)

    def revoke_grant(self, caller: Caller, namespace_id: str, grantee: str) -> None:
        perms = self._access.permissions(caller, namespace_id)
        self._access.require(caller, namespace_id, "share")
        doc = self._store.get_access_doc(caller.tenant, GRANT, grant_id(namespace_id, grantee))
        if doc is None:
            raise NotFound(f"no grant to {grantee!r} on this namespace", code="grant_not_found")
        held = set(GrantRecord.model_validate_json(doc).permissions)
        if "admin" not in perms and not held <= _SHARE_GRANTABLE:
            raise Forbidden(
                "only a namespace admin may revoke share or admin", code="permission_denied"
            )
        self._store.delete_access_doc(caller.tenant, GRANT, grant_id(namespace_id, grantee))

    def grant_creator(self, caller: Caller, namespace_id: str) -> None:
        """The creator of a namespace administers it (tenant admins already do)."""
        if self._access.effective(caller).role == "tenant_admin":
            return
        record = GrantRecord(
            tenant=caller.tenant,
            namespace=namespace_id,
            grantee=caller.principal,
            grantee_kind="principal",
            permissions=["admin"],
            granted_by=caller.principal,
            created_at=self._clock(),
        )
        self._store.put_access_doc(
            caller.tenant, GRANT, grant_id(namespace_id, caller.principal), record.model_dump_json()
        )


class AccessAdminMethods:
    """The Vault's AccessAdminAPI methods (shared/ports/access.py), by delegation."""

    access_admin: AccessAdmin

    def create_principal(self, caller: Caller, req: PrincipalCreate) -> PrincipalCreated:
        return self.access_admin.create_principal(caller, req)

    def list_principals(self, caller: Caller) -> list[PrincipalRecord]:
        return self.access_admin.list_principals(caller)

    def get_principal(self, caller: Caller, principal_id: str) -> PrincipalRecord:
        return self.access_admin.get_principal(caller, principal_id)

    def set_principal_disabled(
        self, caller: Caller, principal_id: str, disabled: bool
    ) -> PrincipalRecord:
        return self.access_admin.set_principal_disabled(caller, principal_id, disabled)

    def create_key(self, caller: Caller, principal_id: str, req: KeyCreate) -> KeyCreated:
        return self.access_admin.create_key(caller, principal_id, req)

    def list_keys(self, caller: Caller, principal_id: str) -> list[KeyInfo]:
        return self.access_admin.list_keys(caller, principal_id)

    def rotate_key(self, caller: Caller, prefix: str, grace_seconds: int) -> KeyCreated:
        return self.access_admin.rotate_key(caller, prefix, grace_seconds)

    def revoke_key(self, caller: Caller, prefix: str) -> None:
        self.access_admin.revoke_key(caller, prefix)

    def create_team(self, caller: Caller, req: TeamCreate) -> TeamRecord:
        return self.access_admin.create_team(caller, req)

    def list_teams(self, caller: Caller) -> list[TeamRecord]:
        return self.access_admin.list_teams(caller)

    def set_team_member(
        self, caller: Caller, team_id: str, principal_id: str, member: bool
    ) -> TeamRecord:
        return self.access_admin.set_team_member(caller, team_id, principal_id, member)

    def grant(self, caller: Caller, namespace_id: str, req: GrantCreate) -> GrantRecord:
        return self.access_admin.grant(caller, namespace_id, req)

    def list_grants(self, caller: Caller, namespace_id: str) -> list[GrantRecord]:
        return self.access_admin.list_grants(caller, namespace_id)

    def revoke_grant(self, caller: Caller, namespace_id: str, grantee: str) -> None:
        self.access_admin.revoke_grant(caller, namespace_id, grantee)
