"""Right to erasure (docs/compliance.md#right-to-erasure): the vault's side.

``Erasures.erase`` finds every plaintext cube with any version about the subject
(the store's ``erasure_candidates``), refuses the whole request when one of their
namespaces is on legal hold, then:

1. derived artefacts first (each step idempotent, so a retry after a failure
   later on redoes them): the namespace's current KV cache built from an erased
   cube is demoted; every adapter distilled from one is marked stale with the
   erased versions as its stale sources;
2. one store transaction: a content-free tombstone version for each cube still
   live, every stored version purged of its content (text, embedding, index
   entries, tags, metadata, sources), the report, and the outbox events:
   memory.deleted (reason ``erased``) per cube, so the scheduler forgets it and
   the trainer withdraws the adapters containing it, retrains without it and
   deletes the withdrawn adapters' files; an EvictActivation (reason ``erased``)
   per KV cache ever built from one, so inference drops it from memory and
   deletes its blobs; and erasure.completed with counts and the subject's digest.

Content-free skeletons of the versions stay (id, version, tenant, namespace,
lifecycle deleted/erased): provenance edges and "which caches and adapters were
built from this memory" keep working. A repeated erasure finds nothing (the
skeletons hold nothing to match) and reports zeros.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from services.vault.activations import activation_cube_id
from services.vault.adapters import AdapterRecords
from shared.errors import FieldError, Forbidden, LegalHold, NotFound
from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.adapters import AdapterState
from shared.schemas.api import Caller, NamespaceRecord
from shared.schemas.commands import EvictActivation, make_command
from shared.schemas.erasure import ERASED, ErasureReport, ErasureRequest, content_free
from shared.schemas.events import (
    ErasureCompleted,
    EventData,
    EventEnvelope,
    MemoryDeleted,
    make_event,
)
from shared.schemas.memcube import (
    ActivationPayload,
    Edge,
    EdgeKind,
    LifecycleState,
    MemCube,
)
from shared.telemetry import current_traceparent


def permission_denied(detail: str) -> Forbidden:
    return Forbidden(detail, code="permission_denied")


class Erasures:
    def __init__(
        self,
        store: GraphStore,
        adapters: AdapterRecords,
        demote_activation: Callable[[str, str, str, str], MemCube | None],
        clock: Callable[[], datetime],
        kick: Callable[[], None],
        source: str,
    ) -> None:
        self._store = store
        self._adapters = adapters
        self._demote = demote_activation
        self._clock = clock
        self._kick = kick
        self._source = source

    def erase(self, caller: Caller, req: ErasureRequest) -> ErasureReport:
        if caller.role != "tenant_admin":
            raise permission_denied("only a tenant admin may erase a subject's data")
        spaces = self._namespaces(caller, req.namespaces)
        ids = self._store.erasure_candidates(caller.tenant, [ns.id for ns in spaces], req.subject)
        histories = {cid: self._store.history(caller.tenant, cid) for cid in ids}
        histories = {cid: h for cid, h in histories.items() if h}
        held = sorted(
            {h[-1].namespace for h in histories.values()}
            & {ns.id for ns in spaces if ns.policy.legal_hold}
        )
        if held:
            raise LegalHold(", ".join(held), "erasure")
        now = self._clock()
        tenant = caller.tenant
        kv_keys = self._kv_caches(tenant, histories)
        adapters = self._mark_adapters(tenant, histories)
        batch = WriteBatch()
        for cid, versions in histories.items():
            current = versions[-1]
            version = current.version
            if current.lifecycle.state != LifecycleState.deleted:
                version += 1
                tomb = content_free(current, now).model_copy(
                    update={"version": version, "updated_at": now}
                )
                batch.cubes.append(CubeWrite(cube=tomb))
                batch.superseded.append((cid, current.version))
                batch.edges.append(
                    Edge(kind=EdgeKind.VERSION_OF, src=tomb.ref, dst=current.ref, reason=ERASED)
                )
            # For already deleted cubes too: a consumer may still hold a derived copy
            # (a withdrawn adapter's files) that only an erasure must destroy.
            deleted = MemoryDeleted(
                cube_id=cid, version=version, reason=ERASED, principal=caller.principal
            )
            batch.events.append(self._event(tenant, current.namespace, deleted))
        for namespace, key, cube_ids in kv_keys:
            evict = EvictActivation(
                command_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"memgrid:erasure:{key}")),
                namespace=namespace,
                reason=ERASED,
                issued_at=now,
                target_id=key,
                cube_ids=cube_ids,
            )
            batch.events.append(make_command(evict, tenant=tenant, source=self._source))
        report = ErasureReport(
            id=f"er_{uuid.uuid4().hex}",
            tenant=tenant,
            subject_kind=req.subject.kind,
            subject_digest=req.subject.digest(),
            namespaces=[ns.id for ns in spaces],
            cube_ids=list(histories),
            versions_purged=0,
            kv_caches_evicted=[key for _, key, _ in kv_keys],
            adapters_stale=adapters,
            requested_by=caller.principal,
            created_at=now,
        )
        report.versions_purged = sum(
            1 for h in histories.values() for v in h if content_free(v, now) != v
        )
        batch.events.append(
            self._event(
                tenant,
                None,
                ErasureCompleted(
                    erasure_id=report.id,
                    subject_kind=report.subject_kind,
                    subject_digest=report.subject_digest,
                    namespaces=report.namespaces,
                    cubes_erased=len(report.cube_ids),
                    versions_purged=report.versions_purged,
                    kv_caches_evicted=len(report.kv_caches_evicted),
                    adapters_stale=len(report.adapters_stale),
                    principal=caller.principal,
                ),
            )
        )
        self._store.erase(tenant, list(histories), batch, now, report)
        self._kick()
        return report

    def get(self, caller: Caller, erasure_id: str) -> ErasureReport:
        if caller.role != "tenant_admin":
            raise permission_denied("only a tenant admin may read erasure reports")
        report = self._store.get_erasure(caller.tenant, erasure_id)
        if report is None:
            raise NotFound(f"erasure {erasure_id!r} not found", code="erasure_not_found")
        return report

    # --- steps ---------------------------------------------------------------------

    def _namespaces(self, caller: Caller, wanted: list[str] | None) -> list[NamespaceRecord]:
        """The namespaces to search: those named, or all of the tenant's; an admin key
        narrowed to some namespaces reaches those only (others read as unknown)."""
        scope = None if caller.key_namespaces is None else set(caller.key_namespaces)
        if wanted is None:
            every = self._store.list_namespaces(caller.tenant)
            return [ns for ns in every if scope is None or ns.id in scope]
        spaces = []
        for i, ns_id in enumerate(dict.fromkeys(wanted)):
            ns = self._store.get_namespace(caller.tenant, ns_id)
            if ns is None or (scope is not None and ns.id not in scope):
                err = NotFound(f"namespace {ns_id!r} not found", code="namespace_not_found")
                err.errors = [FieldError(f"namespaces.{i}", "unknown namespace")]
                raise err
            spaces.append(ns)
        return spaces

    def _kv_caches(
        self, tenant: str, histories: dict[str, list[MemCube]]
    ) -> list[tuple[str, str, list[str]]]:
        """(namespace, manifest key, erased cube ids) of every KV cache ever built
        from an erased cube; the namespace's current one is demoted now."""
        erased = set(histories)
        found: list[tuple[str, str, list[str]]] = []
        for namespace in sorted({h[-1].namespace for h in histories.values()}):
            seen: set[str] = set()
            for version in self._store.history(tenant, activation_cube_id(namespace)):
                payload = version.payload
                if not isinstance(payload, ActivationPayload) or payload.manifest_key in seen:
                    continue
                hit = [r.rpartition("@")[0] for r in payload.source_refs]
                hit = [cid for cid in dict.fromkeys(hit) if cid in erased]
                if hit:
                    seen.add(payload.manifest_key)
                    found.append((namespace, payload.manifest_key, hit))
            for _, key, _ in [f for f in found if f[0] == namespace]:
                self._demote(tenant, namespace, key, ERASED)  # None unless it was current
        return found

    def _mark_adapters(self, tenant: str, histories: dict[str, list[MemCube]]) -> list[str]:
        """Every adapter distilled from an erased cube, marked stale with those
        versions (still-serving ones are withdrawn by the trainer on memory.deleted)."""
        marked: dict[str, None] = {}
        for cid in histories:
            for adapter in self._adapters.containing(tenant, cid):
                refs = [r for r in adapter.sources if r.rpartition("@")[0] == cid]
                self._adapters.set_state(
                    tenant, adapter.id, AdapterState.stale, f"source {cid} {ERASED}", refs
                )
                marked[adapter.id] = None
        return list(marked)

    def _event(self, tenant: str, namespace: str | None, data: EventData) -> EventEnvelope:
        return make_event(
            data,
            source=self._source,
            tenant=tenant,
            namespace=namespace,
            traceparent=current_traceparent(),
            time=self._clock(),
        )
