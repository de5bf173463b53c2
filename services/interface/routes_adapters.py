"""Parametric memory: the LoRA adapters the trainer distilled (docs/adapters-api.md).

``GET /v1/adapters`` and ``GET /v1/adapters/{id}`` read the vault's adapter
records (sources, metrics, state); ``GET /v1/memories/{id}/adapters`` answers
"which adapters contain this memory?" from the graph's DERIVED_FROM edges.
``POST /v1/namespaces/{id}/adapters`` asks for a training run by hand: it checks
the memories and publishes a TrainAdapter command on the event bus, as the
scheduler does, and answers 202 with the command id; the trainer records the
adapter when it is done. Every read is the caller's tenant's only.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.interface.auth import CallerDep
from services.interface.deps import StrictJSONRoute, VaultDep
from services.interface.limits import check_id
from shared.errors import BadRequest, FieldError, NotFound, Unavailable, ValidationFailed
from shared.http_problems import problem_responses
from shared.lifecycle import check_reason
from shared.lora.manifest import AdapterId
from shared.ports.bus import EventBus
from shared.schemas.adapters import (
    AdapterList,
    AdapterRecord,
    AdapterTrainAccepted,
    AdapterTrainRequest,
)
from shared.schemas.commands import TrainAdapter, make_command
from shared.schemas.memcube import Tier, utcnow

router = APIRouter(tags=["adapters"], route_class=StrictJSONRoute)
SOURCE = "/memgrid/interface"
_READ = problem_responses(401, 404, 429, 503)


def get_bus(request: Request) -> EventBus | None:
    bus: EventBus | None = getattr(request.app.state, "bus", None)
    return bus


BusDep = Annotated[EventBus | None, Depends(get_bus)]


def check_adapter_id(value: str) -> str:
    """An id that is no adapter id (name@version+digest) names no adapter: 404."""
    try:
        AdapterId.parse(value)
    except BadRequest:
        raise NotFound(f"adapter {value!r} not found", code="adapter_not_found") from None
    return value


@router.get(
    "/v1/adapters",
    response_model=AdapterList,
    summary="The tenant's adapters (or one namespace's), newest first",
    responses=_READ,
)
def list_adapters(
    caller: CallerDep,
    vault: VaultDep,
    namespace: Annotated[str | None, Query(description="only this namespace's")] = None,
) -> AdapterList:
    """Each adapter's latest record: state (serving, stale, withdrawn, superseded)
    with its reason, sources (``cube_id@version``), stale sources and the training
    run's details (hyperparameters, metrics, data size, duration)."""
    ns = None if namespace is None else check_id(namespace, "namespace")
    return AdapterList(adapters=vault.list_adapters(caller.tenant, ns))


@router.get(
    "/v1/adapters/{adapter_id}",
    response_model=AdapterRecord,
    summary="One adapter: sources, metrics, state",
    responses=_READ,
)
def get_adapter(adapter_id: str, caller: CallerDep, vault: VaultDep) -> AdapterRecord:
    return vault.get_adapter(caller.tenant, check_adapter_id(adapter_id))


@router.get(
    "/v1/memories/{memory_id}/adapters",
    response_model=AdapterList,
    summary="The adapters distilled from any version of a memory",
    responses=_READ,
)
def memory_adapters(memory_id: str, caller: CallerDep, vault: VaultDep) -> AdapterList:
    vault.history(caller, check_id(memory_id, "memory"))  # 404 for unknown or foreign ids
    return AdapterList(adapters=vault.adapters_containing(caller.tenant, memory_id))


@router.post(
    "/v1/namespaces/{namespace_id}/adapters",
    status_code=202,
    response_model=AdapterTrainAccepted,
    summary="Train an adapter from these memories (a TrainAdapter command)",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
def train_adapter(
    namespace_id: str,
    body: AdapterTrainRequest,
    caller: CallerDep,
    vault: VaultDep,
    bus: BusDep,
) -> AdapterTrainAccepted:
    """Every id must be a live plaintext memory of the namespace (404 when unknown
    to the tenant, 422 when of another namespace, not plaintext or retired).
    The command goes to the trainer over the event bus; 202 means it was
    published, not that an adapter exists: watch ``GET /v1/adapters``."""
    vault.get_namespace(caller, check_id(namespace_id, "namespace"))
    reason = check_reason(body.reason)
    ids = list(dict.fromkeys(check_id(i, "memory") for i in body.cube_ids))
    errors = []
    for i, cube_id in enumerate(ids):
        cube = vault.get_memory(caller, cube_id)
        field = f"body.cube_ids[{i}]"
        if cube.namespace != namespace_id:
            errors.append(FieldError(field, "a memory of another namespace"))
        elif cube.tier != Tier.plaintext:
            errors.append(FieldError(field, f"a {cube.tier.value} memory, not plaintext"))
        elif not cube.searchable:
            errors.append(FieldError(field, f"{cube.lifecycle.state.value}, not a live memory"))
    if errors:
        raise ValidationFailed("only live plaintext memories of the namespace are trained", errors)
    if bus is None:
        raise Unavailable("training needs the event bus, which this API has not", "bus_unavailable")
    now = utcnow()
    command = TrainAdapter(
        command_id=str(uuid.uuid4()),
        namespace=namespace_id,
        reason=reason,
        issued_at=now,
        cube_ids=ids,
    )
    event = make_command(command, tenant=caller.tenant, source=SOURCE, time=now)
    bus.publish(command.topic, event, key=namespace_id)
    return AdapterTrainAccepted(command_id=command.command_id, namespace=namespace_id, cube_ids=ids)
