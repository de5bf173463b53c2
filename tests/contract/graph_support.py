"""Builders for the graph store contract suite: cubes, vectors, events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.api import ApiKeyRecord, NamespaceRecord, TenantRecord
from shared.schemas.events import EventEnvelope, MemoryCreated, make_event
from shared.schemas.memcube import (
    Governance,
    Lifecycle,
    LifecycleState,
    LifespanPolicy,
    MemCube,
    Origin,
    PlaintextPayload,
    SemanticType,
)

DIM = 16
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    v = rng.standard_normal((n or 1, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v if n is not None else v[0]


def make_cube(
    tenant: str,
    namespace: str,
    text: str = "a memory",
    *,
    cube_id: str | None = None,
    version: int = 1,
    state: LifecycleState = LifecycleState.generated,
    tags: list[str] | None = None,
    semantic_type: SemanticType = SemanticType.fact,
    origin: Origin = Origin.user_input,
    event_time: datetime | None = None,
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> MemCube:
    return MemCube(
        id=cube_id or str(uuid.uuid4()),
        version=version,
        tenant=tenant,
        namespace=namespace,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        event_time=event_time,
        origin=origin,
        semantic_type=semantic_type,
        tags=tags or [],
        metadata=metadata or {},
        governance=Governance(lifespan=LifespanPolicy(expires_at=expires_at)),
        lifecycle=Lifecycle(state=state, reason="test", changed_at=T0),
        payload=PlaintextPayload(text=text),
    )


def created_event(cube: MemCube) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube.id,
        version=cube.version,
        tier=cube.tier,
        origin=cube.origin,
        semantic_type=cube.semantic_type,
    )
    return make_event(data, source="tests", tenant=cube.tenant, namespace=cube.namespace)


def write_cubes(
    store: GraphStore,
    cubes: list[MemCube],
    vectors: np.ndarray | list[np.ndarray | None] | None = None,
    *,
    events: bool = False,
) -> None:
    vecs: list[np.ndarray | None] = [None] * len(cubes) if vectors is None else list(vectors)
    store.write(
        WriteBatch(
            cubes=[CubeWrite(cube=c, embedding=v) for c, v in zip(cubes, vecs, strict=True)],
            events=[created_event(c) for c in cubes] if events else [],
        )
    )


def new_version(
    old: MemCube, *, text: str | None = None, state: LifecycleState | None = None
) -> MemCube:
    return old.model_copy(
        update={
            "version": old.version + 1,
            "updated_at": old.updated_at + timedelta(seconds=1),
            "payload": PlaintextPayload(text=text if text is not None else old.text or ""),
            "lifecycle": Lifecycle(
                state=state or old.lifecycle.state, reason="test", changed_at=T0
            ),
        }
    )


def setup_tenant(store: GraphStore, tenant: str, *namespaces: str) -> None:
    store.create_tenant(
        TenantRecord(id=tenant, name=tenant, created_at=T0),
        ApiKeyRecord(
            prefix=f"key-{tenant}",
            key_hash="0" * 64,
            tenant=tenant,
            principal="admin",
            created_at=T0,
        ),
    )
    for ns in namespaces:
        store.create_namespace(NamespaceRecord(id=ns, tenant=tenant, name=ns, created_at=T0))
