"""``GET /v1/audit``: the tenant's audit log, for auditors and tenant admins.

Records come from the hash-chained log the governance service keeps
(docs/security.md): memory facts, erasures and the API's decisions, denials
included. Always restricted to the caller's tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute
from shared.errors import Forbidden, Unavailable
from shared.http_problems import problem_responses
from shared.ports.audit import AuditPage, AuditQuery, AuditReader

router = APIRouter(prefix="/v1", tags=["audit"], route_class=StrictJSONRoute)
AUDIT_ROLES = frozenset({"auditor", "tenant_admin"})


def get_audit(request: Request) -> AuditReader:
    audit: AuditReader | None = request.app.state.audit
    if audit is None:
        raise Unavailable("the audit log is not reachable from this API", code="audit_unavailable")
    return audit


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="The tenant's audit records (auditor or tenant admin), filtered, oldest first",
    responses=problem_responses(401, 403, 422, 429, 503),
)
def read_audit(
    caller: CallerDep,
    query: Annotated[AuditQuery, Depends()],
    audit: Annotated[AuditReader, Depends(get_audit)],
) -> AuditPage:
    if caller.role not in AUDIT_ROLES:
        raise Forbidden("reading the audit log needs the auditor role", code="permission_denied")
    return audit.query(caller.tenant, query)
