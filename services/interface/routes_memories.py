"""Memories: create (text or a conversation), get, patch, delete, history, lineage, usage."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from pydantic import ValidationError

from services.interface.auth import CallerDep
from services.interface.deps import (
    ExtractorDep,
    ReaderDep,
    SchedulerDep,
    SettingsDep,
    StrictJSONRoute,
    VaultDep,
)
from services.interface.limits import check_id, check_memory_create, check_memory_patch
from shared.clients.scheduler_http import UNAVAILABLE as SCHEDULER_UNAVAILABLE
from shared.errors import Unavailable
from shared.http_problems import problem_responses
from shared.schemas.api import (
    HistoryResponse,
    LineageResponse,
    MemoriesResponse,
    MemoryCreate,
    MemoryPatch,
)
from shared.schemas.memcube import MemCube
from shared.schemas.usage import MemoryUsage

log = logging.getLogger("memgrid.interface")
router = APIRouter(tags=["memories"], route_class=StrictJSONRoute)
_READ = problem_responses(401, 404, 429, 503)


@router.post(
    "/v1/namespaces/{namespace_id}/memories",
    status_code=201,
    response_model=MemoriesResponse,
    summary="Add memories: one text, or a conversation (one memory per message)",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
def create_memories(
    namespace_id: str,
    body: MemoryCreate,
    caller: CallerDep,
    vault: VaultDep,
    settings: SettingsDep,
    reader: ReaderDep,
    extractor: ExtractorDep,
) -> MemoriesResponse:
    """Give either ``text`` or ``messages``. Relative dates in messages ("yesterday")
    are resolved against each message's timestamp; sources are the message ids."""
    check_memory_create(body, settings.limits)
    # Fail on a missing namespace before reading (and perhaps calling an LLM).
    vault.get_namespace(caller, check_id(namespace_id, "namespace"))
    drafts = extractor.extract(reader.read(body))
    cubes = vault.create_memories(caller, namespace_id, drafts)
    if len(drafts) >= 1000:
        log.info("ingested %d memories into namespace %s", len(cubes), namespace_id)
    return MemoriesResponse(memories=cubes)


@router.get(
    "/v1/memories/{memory_id}",
    response_model=MemCube,
    summary="Get the current version of a memory",
    responses=_READ,
)
def get_memory(memory_id: str, caller: CallerDep, vault: VaultDep) -> MemCube:
    return vault.get_memory(caller, check_id(memory_id, "memory"))


@router.patch(
    "/v1/memories/{memory_id}",
    response_model=MemCube,
    summary="Change a memory: writes and returns a new version",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
def patch_memory(
    memory_id: str, body: MemoryPatch, caller: CallerDep, vault: VaultDep, settings: SettingsDep
) -> MemCube:
    check_memory_patch(body, settings.limits)
    return vault.update_memory(caller, check_id(memory_id, "memory"), body)


@router.delete(
    "/v1/memories/{memory_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a memory (tombstone; gone from search)",
    responses=_READ,
)
def delete_memory(memory_id: str, caller: CallerDep, vault: VaultDep) -> Response:
    vault.delete_memory(caller, check_id(memory_id, "memory"))
    return Response(status_code=204)


@router.get(
    "/v1/memories/{memory_id}/history",
    response_model=HistoryResponse,
    summary="Every version of a memory, oldest first",
    responses=_READ,
)
def memory_history(memory_id: str, caller: CallerDep, vault: VaultDep) -> HistoryResponse:
    return HistoryResponse(versions=vault.history(caller, check_id(memory_id, "memory")))


@router.get(
    "/v1/memories/{memory_id}/lineage",
    response_model=LineageResponse,
    summary="Provenance edges of a memory (VERSION_OF, MERGED_INTO, DERIVED_FROM, ...)",
    responses=_READ,
)
def memory_lineage(memory_id: str, caller: CallerDep, vault: VaultDep) -> LineageResponse:
    """Every edge touching any version of the memory. For a memory made by a merge
    this lists a ``MERGED_INTO`` edge from each original (``id@version``); the
    originals stay readable, in lifecycle state ``merged``."""
    return vault.lineage(caller, check_id(memory_id, "memory"))


@router.get(
    "/v1/memories/{memory_id}/usage",
    response_model=MemoryUsage,
    summary="How a memory is used: counters, scores, and the scheduler's decisions with reasons",
    responses=_READ,
)
def memory_usage(
    memory_id: str, caller: CallerDep, vault: VaultDep, scheduler: SchedulerDep
) -> MemoryUsage:
    """Access count, first and last access, distinct principals and sessions; the
    scores (decayed frequency, hotness, stability, vitality) as of ``as_of``; the
    KV caches and adapters that hold the memory; the scheduler's last decisions
    about it, each with its reason and numbers. A memory nobody has used yet (or
    that the scheduler has not seen yet) has zero counters, ``tracked: false``
    and no decisions. 503 ``scheduler_unavailable`` when the scheduler cannot be
    asked (distributed mode)."""
    # The vault first: its 404 is the tenant check, and it knows memories the
    # scheduler has not seen.
    cube = vault.get_memory(caller, check_id(memory_id, "memory"))
    view = scheduler.explain(caller.tenant, cube.id)
    if view is None:
        return MemoryUsage.untracked(cube)
    try:
        return MemoryUsage.from_view(view)
    except ValidationError as exc:  # a scheduler of another version, or a bug: not a 500
        log.warning("unreadable usage view of %s: %s", cube.id, exc)
        raise Unavailable(
            "the scheduler answered an unreadable usage view", SCHEDULER_UNAVAILABLE
        ) from exc
