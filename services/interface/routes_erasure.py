"""Right to erasure: ``POST /v1/erasures`` and ``GET /v1/erasures/{id}``
(docs/compliance.md#right-to-erasure).

A tenant admin names a subject (a person's identifier, a source id or a
principal) and optionally the namespaces to search (default: all of the
tenant's). The vault does the work in one request (services/vault/erasure.py)
and stores the report; the KV caches and adapters built from the erased memories
are dropped by inference and the trainer as the events reach them. The report
names the subject by its sha256 digest only, never by value.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute, VaultDep
from services.interface.limits import check_id
from shared.errors import Forbidden
from shared.http_problems import problem_responses
from shared.schemas.api import Caller
from shared.schemas.erasure import ErasureReport, ErasureRequest

router = APIRouter(tags=["erasure"], route_class=StrictJSONRoute)


def _admin_only(caller: Caller) -> None:
    # The vault checks again (it is where the data is); this answers before any
    # namespace lookup, so a member learns nothing about the namespaces named.
    if caller.role != "tenant_admin":
        raise Forbidden("only a tenant admin may erase a subject's data", code="permission_denied")


@router.post(
    "/v1/erasures",
    status_code=201,
    response_model=ErasureReport,
    summary="Erase everything about a subject (right to erasure)",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
)
def create_erasure(body: ErasureRequest, caller: CallerDep, vault: VaultDep) -> ErasureReport:
    """Every version of the subject's plaintext memories is purged (text, embedding,
    index entries, metadata, tags, sources; a content-free skeleton keeps the
    provenance), the KV caches built from them are evicted and their blobs
    deleted, the adapters distilled from them are withdrawn, their files deleted
    and a replacement trained without them. 409 ``legal_hold`` (nothing erased)
    when one of the namespaces concerned is on legal hold. Repeating an erasure is
    harmless: the new report counts zero."""
    _admin_only(caller)
    for i, ns in enumerate(body.namespaces or []):
        check_id(ns, f"namespace (namespaces[{i}])")
    return vault.erase(caller, body)


@router.get(
    "/v1/erasures/{erasure_id}",
    response_model=ErasureReport,
    summary="The report of one erasure",
    responses=problem_responses(401, 403, 404, 429, 503),
)
def get_erasure(erasure_id: str, caller: CallerDep, vault: VaultDep) -> ErasureReport:
    _admin_only(caller)
    return vault.get_erasure(caller, check_id(erasure_id, "erasure"))
