"""Activation memory in the graph: one activation-tier MemCube per namespace.

A namespace's KV caches are the versions of one cube, ``kv_<namespace>``: each
build writes a new version (lifecycle ``activated``) whose ``ActivationPayload``
names the cache's blobs, with a DERIVED_FROM edge to every source cube version
and VERSION_OF to the cache it replaced, in one batch. A demotion writes a
version in state ``generated`` (activated → generated is the lifecycle's
demotion). So "the namespace's current cache" is one read that survives restarts
and is shared by every inference replica, and the history lists every cache.

Why one cube per namespace rather than one per cache: the GraphStore reads cubes
by id, and a fixed id makes the current cache a lookup instead of a scan of the
namespace. The cube has no text and no embedding, so plaintext search (vector
and keyword) never returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.vault.derived_cubes import next_version, write_version
from shared.errors import NotFound, ValidationFailed
from shared.ports.graph import GraphStore
from shared.schemas.memcube import (
    ActivationPayload,
    Edge,
    EdgeKind,
    LifecycleState,
    MemCube,
    Tier,
)


def activation_cube_id(namespace: str) -> str:
    return f"kv_{namespace}"


class ActivationRecords:
    def __init__(self, store: GraphStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def _namespace(self, tenant: str, namespace: str) -> None:
        if self._store.get_namespace(tenant, namespace) is None:
            raise NotFound(f"namespace {namespace!r} not found", code="namespace_not_found")

    def record(
        self,
        tenant: str,
        namespace: str,
        payload: ActivationPayload,
        reason: str,
        command_id: str | None = None,
    ) -> MemCube:
        """Makes ``payload`` the namespace's current cache; idempotent for the same
        manifest (a command delivered twice writes one version)."""
        self._namespace(tenant, namespace)
        if not payload.source_refs:
            raise ValidationFailed("an activation needs at least one source memory")
        sources = []
        for ref in payload.source_refs:
            cube_id, _, version = ref.rpartition("@")
            src = self._store.get_cube(tenant, cube_id, int(version)) if version.isdigit() else None
            # Only plaintext memories of this very namespace: a cache must never carry
            # another namespace's (or tenant's) memory under this namespace's name.
            if src is None or src.namespace != namespace or src.tier != Tier.plaintext:
                raise NotFound(f"memory {ref!r} not found in {namespace}", code="memory_not_found")
            sources.append(src)
        old = self._store.get_cube(tenant, activation_cube_id(namespace))
        if (
            old is not None
            and old.lifecycle.state == LifecycleState.activated
            and isinstance(old.payload, ActivationPayload)
            and old.payload.manifest_key == payload.manifest_key
        ):
            return old
        meta: dict[str, Any] = {"reason": reason}
        if command_id is not None:
            meta["command_id"] = command_id
        cube = self._version(tenant, namespace, old, payload, LifecycleState.activated, reason)
        cube = cube.model_copy(update={"metadata": meta})
        edges = [
            Edge(kind=EdgeKind.DERIVED_FROM, src=cube.ref, dst=s.ref, reason=reason)
            for s in sources
        ]
        self._write(cube, old, edges, reason)
        return cube

    def current(self, tenant: str, namespace: str) -> MemCube | None:
        """The namespace's cache in use, or None (never built, or demoted)."""
        cube = self._store.get_cube(tenant, activation_cube_id(namespace))
        if cube is None or cube.lifecycle.state != LifecycleState.activated:
            return None
        return cube

    def demote(self, tenant: str, namespace: str, target_id: str, reason: str) -> MemCube | None:
        """Stops ``target_id`` being current; None when it is not (already demoted or
        replaced), so a repeated eviction writes nothing."""
        old = self.current(tenant, namespace)
        if old is None or not isinstance(old.payload, ActivationPayload):
            return None
        if old.payload.manifest_key != target_id:
            return None
        cube = self._version(tenant, namespace, old, old.payload, LifecycleState.generated, reason)
        self._write(cube, old, [], reason)
        return cube

    def _version(
        self,
        tenant: str,
        namespace: str,
        old: MemCube | None,
        payload: ActivationPayload,
        state: LifecycleState,
        reason: str,
    ) -> MemCube:
        metadata = dict(old.metadata) if old is not None else {}
        return next_version(
            activation_cube_id(namespace),
            tenant,
            namespace,
            old,
            payload,
            state,
            reason,
            metadata,
            self._clock(),
        )

    def _write(self, cube: MemCube, old: MemCube | None, edges: list[Edge], reason: str) -> None:
        write_version(self._store, cube, old, edges, reason)
