"""Health, readiness and tenant administration (root admin key only)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends

from services.interface.auth import require_admin
from services.interface.deps import StrictJSONRoute, VaultDep
from shared.errors import Unavailable
from shared.http_problems import problem_responses
from shared.schemas.api import TenantCreate, TenantCreated

log = logging.getLogger("memgrid.interface")
router = APIRouter(route_class=StrictJSONRoute)


@router.get("/healthz", tags=["health"], summary="Liveness")
def healthz() -> dict[str, str]:
    """The process is up. Checks nothing else."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="Readiness", responses=problem_responses(503))
def readyz(vault: VaultDep) -> dict[str, str]:
    """Ready to serve: the vault and its stores answer. 503 problem otherwise."""
    try:
        vault.ready()
    except Unavailable:
        raise
    except Exception as exc:  # readiness must answer 503, whatever the dependency raised
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise Unavailable("a dependency is unavailable") from exc
    return {"status": "ready"}


@router.post(
    "/v1/tenants",
    tags=["tenants"],
    status_code=201,
    response_model=TenantCreated,
    summary="Create a tenant (root admin)",
    dependencies=[Depends(require_admin)],
    responses=problem_responses(401, 403, 413, 422, 429, 503),
)
def create_tenant(body: TenantCreate, vault: VaultDep) -> TenantCreated:
    """Creates a tenant and its first API key. The key is shown only in this answer."""
    return vault.create_tenant(body.name)
