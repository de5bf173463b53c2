"""Compliance: a namespace's policy (PII, retention, legal hold) and watermarked exports.

See docs/compliance.md. The vault enforces the rules (in both modes); these
routes only carry requests to it.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute, VaultDep
from services.interface.limits import check_id
from shared.http_problems import problem_responses
from shared.schemas.api import NamespaceRecord
from shared.schemas.compliance import ExportRecord, NamespaceExport, NamespacePolicyPatch

router = APIRouter(tags=["compliance"], route_class=StrictJSONRoute)


@router.patch(
    "/v1/namespaces/{namespace_id}/policy",
    response_model=NamespaceRecord,
    summary="Change a namespace's policy: PII handling, retention, legal hold (tenant admin)",
    responses=problem_responses(400, 401, 403, 404, 413, 422, 429, 503),
)
def patch_policy(
    namespace_id: str, body: NamespacePolicyPatch, caller: CallerDep, vault: VaultDep
) -> NamespaceRecord:
    """Only the fields given change; ``retention_days: null`` removes the limit.
    New rules apply to writes from now on; legal hold and retention also to the
    memories already stored, at the next expiry run."""
    ns = vault.get_namespace(caller, check_id(namespace_id, "namespace"))
    return vault.update_namespace_policy(caller, ns.id, body.apply(ns.policy))


@router.get(
    "/v1/namespaces/{namespace_id}/export",
    response_model=NamespaceExport,
    summary="Export a namespace's current memories, each text invisibly watermarked",
    responses=problem_responses(401, 403, 404, 429, 503),
)
def export_namespace(namespace_id: str, caller: CallerDep, vault: VaultDep) -> NamespaceExport:
    """Every text carries the export id in zero-width characters (``memgrid
    compliance watermark FILE`` reads it back from leaked text); the export is
    recorded with who took it, when and how many memories."""
    return vault.export_namespace(caller, check_id(namespace_id, "namespace"))


@router.get(
    "/v1/exports/{export_id}",
    response_model=ExportRecord,
    summary="An export's record: namespace, principal, time, count",
    responses=problem_responses(401, 404, 429, 503),
)
def get_export(export_id: str, caller: CallerDep, vault: VaultDep) -> ExportRecord:
    return vault.get_export(caller, check_id(export_id, "export"))
