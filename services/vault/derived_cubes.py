"""The one-cube-per-namespace records of derived memory (KV caches, LoRA adapters).

activations.py (``kv_<namespace>``) and adapters.py (``lora_<namespace>``) keep a
namespace's caches or adapters as the versions of one fixed-id cube with no text
and no embedding (search never returns it). Both write a version the same way:
the next version number, the previous version superseded and linked VERSION_OF,
the new one's own edges (DERIVED_FROM its sources) in the same batch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.memcube import (
    ActivationPayload,
    Edge,
    EdgeKind,
    Lifecycle,
    LifecycleState,
    MemCube,
    Origin,
    ParametricPayload,
    SemanticType,
)


def next_version(
    cube_id: str,
    tenant: str,
    namespace: str,
    old: MemCube | None,
    payload: ActivationPayload | ParametricPayload,
    state: LifecycleState,
    reason: str,
    metadata: dict[str, Any],
    now: datetime,
) -> MemCube:
    """The version after ``old`` (or the first) holding ``payload`` in ``state``."""
    return MemCube(
        id=cube_id,
        version=old.version + 1 if old is not None else 1,
        tenant=tenant,
        namespace=namespace,
        created_at=old.created_at if old is not None else now,
        updated_at=now,
        origin=Origin.inference_extraction,
        semantic_type=SemanticType.summary,
        sources=list(payload.source_refs),
        metadata=metadata,
        lifecycle=Lifecycle(state=state, reason=reason, changed_at=now),
        payload=payload,
    )


def write_version(
    store: GraphStore, cube: MemCube, old: MemCube | None, edges: list[Edge], reason: str
) -> None:
    """``cube`` with ``edges`` in one batch, superseding ``old`` (VERSION_OF it)."""
    batch = WriteBatch(cubes=[CubeWrite(cube=cube)], edges=edges)
    if old is not None:
        batch.superseded.append((old.id, old.version))
        batch.edges.append(Edge(kind=EdgeKind.VERSION_OF, src=cube.ref, dst=old.ref, reason=reason))
    store.write(batch)
