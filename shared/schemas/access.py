"""Principals, teams, API keys and namespace grants (docs/access-control.md).

Roles say what a principal may do in its tenant: ``tenant_admin`` (everything,
every namespace), ``member`` (create namespaces, use those granted), ``agent``
(use the namespaces granted; cannot create any), ``auditor`` (read the audit
log; no memory data unless granted). Permissions on a namespace: ``read``,
``write``, ``share`` (grant read/write to others) and ``admin`` (anything);
``admin`` implies the others, ``write`` and ``share`` imply ``read``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.schemas.api import NAME_PATTERN

Permission = Literal["read", "write", "share", "admin"]
Role = Literal["tenant_admin", "member", "agent", "auditor"]
PrincipalKind = Literal["user", "agent", "service_account"]

PERMISSIONS: tuple[str, ...] = ("read", "write", "share", "admin")
IMPLIES: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"write", "read"}),
    "share": frozenset({"share", "read"}),
    "admin": frozenset(PERMISSIONS),
}
# Roles that may create namespaces (and so become their admins).
CREATOR_ROLES = frozenset({"tenant_admin", "member"})
MAX_SCOPE_NAMESPACES = 100


def expand(permissions: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The permissions with everything they imply."""
    out: set[str] = set()
    for p in permissions:
        out |= IMPLIES.get(p, frozenset())
    return frozenset(out)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrincipalCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    kind: PrincipalKind = "user"
    role: Role = "member"


class PrincipalRecord(_Strict):
    id: str
    tenant: str
    name: str
    kind: PrincipalKind
    role: Role
    created_at: AwareDatetime
    disabled: bool = False


class PrincipalPatch(_Strict):
    disabled: bool


class PrincipalCreated(_Strict):
    principal: PrincipalRecord
    key_prefix: str
    api_key: str = Field(description="shown only in this answer")


class PrincipalList(_Strict):
    principals: list[PrincipalRecord]


class KeyCreate(_Strict):
    """A new key for a principal; ``namespaces``/``permissions`` narrow it (never widen)."""

    namespaces: list[str] | None = Field(default=None, max_length=MAX_SCOPE_NAMESPACES)
    permissions: list[Permission] | None = Field(default=None, min_length=1)
    expires_at: AwareDatetime | None = None


class KeyRotate(_Strict):
    grace_seconds: int = Field(
        default=3600, ge=0, le=7 * 24 * 3600, description="how long the old key keeps working"
    )


class KeyInfo(_Strict):
    """An API key as clients see it: never the secret, never the hash."""

    prefix: str
    principal: str
    role: str
    namespaces: list[str] | None = None
    permissions: list[str] | None = None
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    revoked: bool = False


class KeyCreated(_Strict):
    key: KeyInfo
    api_key: str = Field(description="shown only in this answer")


class KeyList(_Strict):
    keys: list[KeyInfo]


class TeamCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)


class TeamRecord(_Strict):
    id: str
    tenant: str
    name: str
    members: list[str] = Field(default_factory=list)
    created_at: AwareDatetime


class TeamList(_Strict):
    teams: list[TeamRecord]


class GrantCreate(_Strict):
    grantee: str = Field(min_length=1, max_length=200, description="a principal id or team id")
    permissions: list[Permission] = Field(min_length=1, max_length=4)


class GrantRecord(_Strict):
    tenant: str
    namespace: str
    grantee: str
    grantee_kind: Literal["principal", "team"]
    permissions: list[str]
    granted_by: str
    created_at: AwareDatetime


class GrantList(_Strict):
    grants: list[GrantRecord]
