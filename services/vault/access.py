"""AccessControl: what a caller may do in each namespace, from the vault's records.

The interface authenticates; the vault decides. For a caller with an API key the
vault reads the key record itself (role, scope, revocation), so a caller's claims
sent over the internal API cannot widen its rights. Internal system callers (no
key: the scheduler, trainer, inference) act for their tenant with the role they
send, which only services holding the service token can do.

Rules (docs/access-control.md):

* ``tenant_admin`` has every permission on every namespace of its tenant;
* anyone else has the union of the grants to itself and to its teams;
* the key's scope (``namespaces``, ``permissions``) narrows that, never widens it;
* without ``read`` a namespace does not exist for the caller (404, exactly like
  an unknown id); with ``read`` but without what the operation needs: 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Forbidden, NotFound
from shared.ports.graph import GraphStore
from shared.schemas.access import PERMISSIONS, GrantRecord, TeamRecord, expand
from shared.schemas.api import Caller, NamespaceRecord

GRANT = "grant"
TEAM = "team"
PRINCIPAL = "principal"
_ALL = frozenset(PERMISSIONS)


def grant_id(namespace: str, grantee: str) -> str:
    return f"{namespace}/{grantee}"


@dataclass(frozen=True)
class Effective:
    """A caller as the vault sees it after reading the key record."""

    role: str
    namespaces: frozenset[str] | None  # the key's namespace scope
    permissions: frozenset[str] | None  # the key's permission scope (expanded)
    valid: bool = True


class AccessControl:
    def __init__(self, store: GraphStore) -> None:
        self._store = store

    # --- who is asking ---------------------------------------------------------------

    def effective(self, caller: Caller) -> Effective:
        if caller.key_prefix is None:
            return Effective(caller.role, None, None)
        key = self._store.find_api_key(caller.key_prefix)
        if (
            key is None
            or key.revoked
            or key.tenant != caller.tenant
            or key.principal != caller.principal
        ):
            return Effective(caller.role, frozenset(), frozenset(), valid=False)
        return Effective(
            key.role,
            frozenset(key.namespaces) if key.namespaces is not None else None,
            expand(key.permissions) if key.permissions is not None else None,
        )

    def teams_of(self, tenant: str, principal: str) -> set[str]:
        teams = (
            TeamRecord.model_validate_json(doc)
            for doc in self._store.list_access_docs(tenant, TEAM)
        )
        return {t.id for t in teams if principal in t.members}

    def grants(self, tenant: str, namespace: str | None = None) -> list[GrantRecord]:
        found = [
            GrantRecord.model_validate_json(doc)
            for doc in self._store.list_access_docs(tenant, GRANT)
        ]
        return [g for g in found if namespace is None or g.namespace == namespace]

    # --- decisions -------------------------------------------------------------------

    def permissions_by_namespace(self, caller: Caller) -> dict[str, frozenset[str]] | None:
        """Granted permissions per namespace; None means every namespace (tenant admin),
        before the key's scope is applied."""
        eff = self.effective(caller)
        if not eff.valid:
            return {}
        if eff.role == "tenant_admin":
            return None
        me = {caller.principal} | self.teams_of(caller.tenant, caller.principal)
        out: dict[str, set[str]] = {}
        for g in self.grants(caller.tenant):
            if g.grantee in me:
                out.setdefault(g.namespace, set()).update(expand(g.permissions))
        return {ns: frozenset(p) for ns, p in out.items()}

    def permissions(self, caller: Caller, namespace: str) -> frozenset[str]:
        eff = self.effective(caller)
        if not eff.valid:
            return frozenset()
        granted = self.permissions_by_namespace(caller)
        perms = _ALL if granted is None else granted.get(namespace, frozenset())
        return self._scoped(eff, namespace, perms)

    @staticmethod
    def _scoped(eff: Effective, namespace: str, perms: frozenset[str]) -> frozenset[str]:
        if eff.namespaces is not None and namespace not in eff.namespaces:
            return frozenset()
        if eff.permissions is not None:
            perms = perms & eff.permissions
        return perms

    def readable(self, caller: Caller) -> list[str]:
        """Ids of every namespace of the tenant the caller may read, oldest first."""
        eff = self.effective(caller)
        if not eff.valid:
            return []
        granted = self.permissions_by_namespace(caller)
        out = []
        for ns in self._store.list_namespaces(caller.tenant):
            perms = _ALL if granted is None else granted.get(ns.id, frozenset())
            if "read" in self._scoped(eff, ns.id, perms):
                out.append(ns.id)
        return out

    def require(self, caller: Caller, namespace_id: str, permission: str) -> NamespaceRecord:
        """The namespace, if the caller holds ``permission`` on it; NotFound without
        read (its existence is not revealed), Forbidden with read only."""
        ns = self._store.get_namespace(caller.tenant, namespace_id)
        perms = self.permissions(caller, namespace_id) if ns is not None else frozenset()
        if ns is None or "read" not in perms:
            raise NotFound(f"namespace {namespace_id!r} not found", code="namespace_not_found")
        if permission not in perms:
            raise Forbidden(
                f"{permission} permission on namespace {namespace_id!r} is required",
                code="permission_denied",
            )
        return ns

    def require_role(self, caller: Caller, *roles: str) -> None:
        eff = self.effective(caller)
        if not eff.valid or eff.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}", code="permission_denied")
