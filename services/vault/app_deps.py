"""Dependencies of the vault's internal routes: the Caller from headers, the Vault."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.vault.service import Vault
from shared.schemas.api import Caller


def _caller(
    x_memgrid_tenant: Annotated[str, Header()],
    x_memgrid_principal: Annotated[str, Header()],
    x_memgrid_role: Annotated[str, Header()] = "tenant_admin",
    x_memgrid_key_prefix: Annotated[str | None, Header()] = None,
) -> Caller:
    # With a key prefix, the vault reads the key's role and scope from its own
    # record (services/vault/access.py); the role header only serves system callers.
    return Caller(
        tenant=x_memgrid_tenant,
        principal=x_memgrid_principal,
        role=x_memgrid_role,
        key_prefix=x_memgrid_key_prefix or None,
    )


CallerDep = Annotated[Caller, Depends(_caller)]


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


VaultDep = Annotated[Vault, Depends(_vault)]
