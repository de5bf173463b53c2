"""Hybrid search over one or several namespaces of the caller's tenant."""

from __future__ import annotations

from fastapi import APIRouter

from services.interface.auth import CallerDep
from services.interface.deps import SettingsDep, StrictJSONRoute, VaultDep
from services.interface.limits import check_search
from shared.http_problems import problem_responses
from shared.schemas.api import SearchRequest, SearchResponse

router = APIRouter(tags=["search"], route_class=StrictJSONRoute)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search memories (dense + keyword + time, fused)",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
def search(
    body: SearchRequest, caller: CallerDep, vault: VaultDep, settings: SettingsDep
) -> SearchResponse:
    """Results from every listed namespace, best first. Unknown namespaces → 404."""
    check_search(body, settings.limits, settings.search)
    namespaces = list(dict.fromkeys(body.namespaces))
    if len(namespaces) != len(body.namespaces):
        body = body.model_copy(update={"namespaces": namespaces})
    return vault.search(caller, body)
