"""Authentication: ``Authorization: Bearer <key>`` → a Caller, or 401.

Tenant keys read ``mg_<prefix>_<secret>`` (shared.security). The prefix finds the
stored record through ``VaultAPI.find_api_key``; the key's sha256 is compared
with the stored hash in constant time; revoked or expired keys are refused. Every
refusal gives the same 401 (with ``WWW-Authenticate: Bearer``) so that a client
learns nothing about which part was wrong. The root admin key
(``settings.admin_key``) only creates tenants. Keys are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, Unauthorized
from shared.ports.vault import VaultAPI
from shared.schemas.api import ApiKeyRecord, Caller
from shared.security import constant_time_equals, hash_api_key, parse_api_key
from shared.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer mg_<prefix>_<secret>`; the root admin key for /v1/tenants",
)
_DUMMY_HASH = hash_api_key("mg_000000000000_" + "0" * 43)


def _now() -> datetime:
    return datetime.now(UTC)


def authenticate(
    token: str, vault: VaultAPI, settings: Settings, now: datetime | None = None
) -> Caller:
    """The Caller a tenant key acts for; raises Unauthorized (or Forbidden for the admin key)."""
    if is_admin_key(token, settings):
        raise Forbidden("the root admin key only manages tenants; use a tenant key")
    prefix = parse_api_key(token)
    record: ApiKeyRecord | None = vault.find_api_key(prefix) if prefix else None
    # Hash and compare even when there is no record, so timing does not tell.
    matches = constant_time_equals(hash_api_key(token), record.key_hash if record else _DUMMY_HASH)
    if record is None or not matches or record.revoked:
        raise Unauthorized()
    if record.expires_at is not None and record.expires_at <= (now or _now()):
        raise Unauthorized()
    return Caller(
        tenant=record.tenant,
        principal=record.principal,
        role=record.role,
        key_prefix=record.prefix,
        key_namespaces=record.namespaces,
        key_permissions=record.permissions,
    )


def is_admin_key(token: str, settings: Settings) -> bool:
    if settings.admin_key is None:
        return False
    admin = settings.admin_key.get_secret_value()
    return bool(admin) and constant_time_equals(token, admin)


def _token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or not creds.credentials:
        raise Unauthorized()
    return creds.credentials


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require_caller(request: Request, creds: Credentials) -> Caller:
    """FastAPI dependency: the authenticated tenant caller."""
    state = request.app.state
    caller = authenticate(_token(creds), state.vault, state.settings)
    request.state.caller = caller  # for the audit trail of the API's decisions
    return caller


def require_admin(request: Request, creds: Credentials) -> None:
    """FastAPI dependency: the root admin. 403 when no admin key is configured."""
    settings: Settings = request.app.state.settings
    if settings.admin_key is None or not settings.admin_key.get_secret_value():
        raise Forbidden("tenant administration is disabled: no admin key is configured")
    token = _token(creds)
    if is_admin_key(token, settings):
        return
    if parse_api_key(token) is not None:
        authenticate(token, request.app.state.vault, settings)  # 401 when not valid
        raise Forbidden("only the root admin key may create tenants")
    raise Unauthorized()


CallerDep = Annotated[Caller, Depends(require_caller)]
