"""Parametric memory in the graph: one parametric-tier MemCube per namespace.

A namespace's LoRA adapters are recorded as the versions of one cube,
``lora_<namespace>`` (as its KV caches are the versions of ``kv_<namespace>``,
services/vault/activations.py). Recording an adapter writes a version whose
``ParametricPayload`` names the adapter (id, manifest, base model, sources) with
a DERIVED_FROM edge to every source cube version and VERSION_OF to the version
before, in one batch; each later state change of that adapter (stale, withdrawn,
superseded) writes another version with the same payload. So the record of an
adapter is the view of its latest version, "which adapters contain this cube?"
is the DERIVED_FROM edges into the cube, and every state an adapter went
through stays in the history.

The version's metadata holds what the payload does not: ``adapter_id``,
``state``, ``reason``, ``stale_sources``, ``details`` (AdapterDetails) and
``adapter_created_at``. A newly recorded adapter also lists the adapters it took
over from (``supersedes``): the one write that makes it serving makes them
``superseded``, so there is never a moment with two serving adapters.

Lifecycle of the versions: serving and stale adapters are ``activated`` (still
served), withdrawn and superseded ones ``generated`` (activated → generated is
the lifecycle's demotion; generated → activated lets the next adapter serve).
The cube has no text and no embedding, so plaintext search never returns it.

Adapter states move: serving → stale | withdrawn | superseded; stale →
withdrawn | superseded; superseded → withdrawn; withdrawn is final. Marking a
withdrawn or superseded adapter stale only adds to its stale sources (a source
change reaches every adapter that contains it, served or not). An adapter is
never made serving again by a state change: a new training run records a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.vault.derived_cubes import next_version, write_version
from shared.errors import IllegalTransition, NotFound, ValidationFailed
from shared.lifecycle import allowed, check_reason
from shared.lora.manifest import AdapterId
from shared.ports.graph import GraphStore
from shared.schemas.adapters import AdapterDetails, AdapterRecord, AdapterState
from shared.schemas.memcube import (
    Edge,
    EdgeKind,
    LifecycleState,
    MemCube,
    ParametricPayload,
    Tier,
)

PREFIX = "lora_"
A = AdapterState

LIFECYCLE: dict[AdapterState, LifecycleState] = {
    A.serving: LifecycleState.activated,
    A.stale: LifecycleState.activated,
    A.withdrawn: LifecycleState.generated,
    A.superseded: LifecycleState.generated,
}

MOVES: dict[AdapterState, frozenset[AdapterState]] = {
    A.serving: frozenset({A.stale, A.withdrawn, A.superseded}),
    A.stale: frozenset({A.withdrawn, A.superseded}),
    A.superseded: frozenset({A.withdrawn}),
    A.withdrawn: frozenset(),
}
SERVED = frozenset({A.serving, A.stale})


def adapter_cube_id(namespace: str) -> str:
    return f"{PREFIX}{namespace}"


def adapter_not_found(adapter_id: str) -> NotFound:
    return NotFound(f"adapter {adapter_id!r} not found", code="adapter_not_found")


@dataclass
class _View:
    record: AdapterRecord
    version: MemCube  # the adapter's own latest version (its payload and details)
    first: int  # the cube version that recorded it: orders adapters newest first
    first_at: datetime


class AdapterRecords:
    def __init__(self, store: GraphStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    # --- writes ------------------------------------------------------------------

    def record(
        self,
        tenant: str,
        namespace: str,
        payload: ParametricPayload,
        details: AdapterDetails,
        reason: str,
    ) -> AdapterRecord:
        """Makes the adapter serving; the adapters serving before become superseded.
        Recording an id already recorded returns its record unchanged."""
        if self._store.get_namespace(tenant, namespace) is None:
            raise NotFound(f"namespace {namespace!r} not found", code="namespace_not_found")
        why = check_reason(reason)
        AdapterId.parse(payload.adapter_id)  # 400 bad_request for a malformed id
        views = self._views(tenant, namespace)
        if payload.adapter_id in views:
            return views[payload.adapter_id].record
        if not payload.source_refs:
            raise ValidationFailed("an adapter needs at least one source memory")
        sources = []
        for ref in dict.fromkeys(payload.source_refs):
            cube_id, _, version = ref.rpartition("@")
            src = self._store.get_cube(tenant, cube_id, int(version)) if version.isdigit() else None
            # Only plaintext memories of this very namespace: an adapter must never
            # carry another namespace's (or tenant's) memory under this one's name.
            if src is None or src.namespace != namespace or src.tier != Tier.plaintext:
                raise NotFound(f"memory {ref!r} not found in {namespace}", code="memory_not_found")
            sources.append(src)
        taken_over = sorted(i for i, v in views.items() if v.record.state in SERVED)
        meta: dict[str, Any] = {
            "adapter_id": payload.adapter_id,
            "state": A.serving.value,
            "reason": why,
            "stale_sources": [],
            "details": details.model_dump(mode="json"),
            "adapter_created_at": self._clock().isoformat(),
            "supersedes": taken_over,
        }
        old = self._store.get_cube(tenant, adapter_cube_id(namespace))
        cube = self._version(tenant, namespace, old, payload, A.serving, why, meta)
        edges = [
            Edge(kind=EdgeKind.DERIVED_FROM, src=cube.ref, dst=s.ref, reason=why) for s in sources
        ]
        self._write(cube, old, edges, why)
        return self._views(tenant, namespace)[payload.adapter_id].record

    def set_state(
        self,
        tenant: str,
        adapter_id: str,
        state: AdapterState,
        reason: str,
        stale_sources: Sequence[str] = (),
    ) -> AdapterRecord:
        """A new version of the adapter in ``state``; ``stale_sources`` are added to
        its own. Returns the record unchanged when nothing changes."""
        view = self._find(tenant, adapter_id)
        why = check_reason(reason)
        rec = view.record
        stale = list(dict.fromkeys([*rec.stale_sources, *(str(s) for s in stale_sources)]))
        target = AdapterState(state)
        if target == A.stale and rec.state not in SERVED:
            target = rec.state  # retired already: only the stale sources are news
        if target != rec.state and target not in MOVES[rec.state]:
            raise IllegalTransition(
                rec.state.value,
                target.value,
                f"an adapter cannot go from {rec.state.value!r} to {target.value!r}",
            )
        if target == rec.state and stale == rec.stale_sources:
            return rec
        frm, to = LIFECYCLE[rec.state], LIFECYCLE[target]
        if frm != to and not allowed(frm, to):  # the table above stays within the lifecycle's
            raise IllegalTransition(frm.value, to.value)
        own = view.version
        assert isinstance(own.payload, ParametricPayload)
        meta = dict(own.metadata)
        meta.pop("supersedes", None)
        meta.update(
            {
                "state": target.value,
                "reason": why,
                "stale_sources": stale,
                "adapter_created_at": rec.created_at,
            }
        )
        old = self._store.get_cube(tenant, own.id)
        cube = self._version(tenant, rec.namespace, old, own.payload, target, why, meta)
        self._write(cube, old, [], why)
        return self._views(tenant, rec.namespace)[adapter_id].record

    # --- reads -------------------------------------------------------------------

    def get(self, tenant: str, adapter_id: str) -> AdapterRecord:
        return self._find(tenant, adapter_id).record

    def listing(self, tenant: str, namespace: str | None = None) -> list[AdapterRecord]:
        """Newest first: by the time each adapter was recorded."""
        if namespace is not None:
            if self._store.get_namespace(tenant, namespace) is None:
                raise NotFound(f"namespace {namespace!r} not found", code="namespace_not_found")
            spaces = [namespace]
        else:
            spaces = [ns.id for ns in self._store.list_namespaces(tenant)]
        views = [v for ns in spaces for v in self._views(tenant, ns).values()]
        views.sort(key=lambda v: (v.first_at, v.record.namespace, v.first), reverse=True)
        return [v.record for v in views]

    def containing(self, tenant: str, cube_id: str) -> list[AdapterRecord]:
        """The adapters DERIVED_FROM any version of ``cube_id``, newest first."""
        found: dict[str, _View] = {}
        cache: dict[str, dict[str, _View]] = {}
        for edge in self._store.edges(tenant, cube_id):
            src_id, _, src_version = edge.src.rpartition("@")
            dst_id = edge.dst.rpartition("@")[0] or edge.dst
            if (
                edge.kind != EdgeKind.DERIVED_FROM
                or dst_id != cube_id
                or not src_id.startswith(PREFIX)
                or not src_version.isdigit()
            ):
                continue
            version = self._store.get_cube(tenant, src_id, int(src_version))
            if version is None or not isinstance(version.payload, ParametricPayload):
                continue
            views = cache.get(version.namespace)
            if views is None:
                views = cache[version.namespace] = self._views(tenant, version.namespace)
            view = views.get(version.payload.adapter_id)
            if view is not None:
                found[view.record.id] = view
        ordered = sorted(found.values(), key=lambda v: (v.first_at, v.first), reverse=True)
        return [v.record for v in ordered]

    # --- the views of one namespace's history ---------------------------------------

    def _find(self, tenant: str, adapter_id: str) -> _View:
        for ns in self._store.list_namespaces(tenant):
            view = self._views(tenant, ns.id).get(adapter_id)
            if view is not None:
                return view
        raise adapter_not_found(adapter_id)

    def _views(self, tenant: str, namespace: str) -> dict[str, _View]:
        """Every adapter of the namespace, as of its latest version (or the version
        that superseded it, when that came later)."""
        views: dict[str, _View] = {}
        for cube in self._store.history(tenant, adapter_cube_id(namespace)):
            if not isinstance(cube.payload, ParametricPayload):
                continue
            aid = cube.payload.adapter_id
            first = views[aid].first if aid in views else cube.version
            first_at = views[aid].first_at if aid in views else cube.updated_at
            views[aid] = _View(_record(cube), cube, first, first_at)
            for gone in cube.metadata.get("supersedes") or []:
                prev = views.get(gone)
                if prev is None or prev.record.state not in SERVED:
                    continue
                record = prev.record.model_copy(
                    update={
                        "state": A.superseded,
                        "reason": f"superseded by {aid}",
                        "updated_at": cube.updated_at.isoformat(),
                        "record": cube.ref,
                    }
                )
                views[gone] = _View(record, prev.version, prev.first, prev.first_at)
        return views

    def _version(
        self,
        tenant: str,
        namespace: str,
        old: MemCube | None,
        payload: ParametricPayload,
        state: AdapterState,
        reason: str,
        metadata: dict[str, Any],
    ) -> MemCube:
        cube_id = adapter_cube_id(namespace)
        state_ = LIFECYCLE[state]
        return next_version(
            cube_id, tenant, namespace, old, payload, state_, reason, metadata, self._clock()
        )

    def _write(self, cube: MemCube, old: MemCube | None, edges: list[Edge], reason: str) -> None:
        write_version(self._store, cube, old, edges, reason)


def _record(cube: MemCube) -> AdapterRecord:
    payload = cube.payload
    assert isinstance(payload, ParametricPayload)
    meta = cube.metadata
    return AdapterRecord(
        id=payload.adapter_id,
        tenant=cube.tenant,
        namespace=cube.namespace,
        state=AdapterState(meta.get("state", A.serving.value)),
        reason=str(meta.get("reason", cube.lifecycle.reason)),
        created_at=str(meta.get("adapter_created_at") or cube.updated_at.isoformat()),
        updated_at=cube.updated_at.isoformat(),
        base_model=payload.base_model_fingerprint,
        manifest_key=payload.manifest_key,
        sources=list(payload.source_refs),
        stale_sources=[str(s) for s in meta.get("stale_sources") or []],
        details=AdapterDetails.model_validate(meta.get("details") or {}),
        record=cube.ref,
    )
