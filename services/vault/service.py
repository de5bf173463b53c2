"""The vault: system of record for tenants, namespaces and MemCubes.

Implements shared.ports.vault.VaultAPI. Every write is one GraphStore.write —
cube versions, provenance edges and the outbox events together — and the relay
publishes the events after the commit. Cubes are never edited in place: an update
or a delete writes a new version linked VERSION_OF to the one before it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np

from services.vault.access import AccessControl
from services.vault.access_admin import AccessAdmin, AccessAdminMethods
from services.vault.activations import ActivationRecords
from services.vault.adapters import AdapterRecords
from services.vault.compliance import IngestCompliance, NamespaceGovernance, check_not_held, tagged
from services.vault.erasure import Erasures
from services.vault.lifecycle_ops import LifecycleOps
from services.vault.outbox import OutboxRelay
from services.vault.retrieval import Retriever
from shared.errors import NotFound, ValidationFailed
from shared.ports.bus import EventBus
from shared.ports.embedder import Embedder
from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.access import CREATOR_ROLES
from shared.schemas.adapters import AdapterDetails, AdapterRecord, AdapterState
from shared.schemas.api import (
    AccessReport,
    ApiKeyRecord,
    Caller,
    CubeDraft,
    LineageEdge,
    LineageResponse,
    MemoryPatch,
    NamespaceCreate,
    NamespacePolicy,
    NamespaceRecord,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TenantCreated,
    TenantRecord,
)
from shared.schemas.compliance import ExportRecord, NamespaceExport
from shared.schemas.erasure import ErasureReport, ErasureRequest
from shared.schemas.events import (
    EventData,
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryUpdated,
    make_event,
)
from shared.schemas.memcube import (
    ActivationPayload,
    Edge,
    EdgeKind,
    Governance,
    Lifecycle,
    LifecycleState,
    LifespanPolicy,
    MemCube,
    ParametricPayload,
    PlaintextPayload,
    utcnow,
)
from shared.security import generate_api_key
from shared.settings import Settings
from shared.telemetry import current_traceparent, traced
from shared.tokens import estimate_tokens

log = logging.getLogger(__name__)
SOURCE = "/memgrid/vault"
EMBED_CHUNK = 512  # cubes embedded per step of a large ingest (progress granularity)


class Vault(AccessAdminMethods):
    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        bus: EventBus,
        embedder: Embedder,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._store = store
        self._bus = bus
        self._embedder = embedder
        self._clock = clock
        self._retriever = Retriever(store, embedder, settings.search)
        self.relay = OutboxRelay(store, bus)
        self._compliance = IngestCompliance(settings.compliance)
        self._governance = NamespaceGovernance(store, clock)
        self._lifecycle = LifecycleOps(
            store, embedder, clock, self.relay.kick, SOURCE, rules=self._governance
        )
        self._activations = ActivationRecords(store, clock)
        self._adapters = AdapterRecords(store, clock)
        self.access = AccessControl(store)
        self.access_admin = AccessAdmin(store, self.access, clock)
        self._erasures = Erasures(
            store, self._adapters, self._activations.demote, clock, self.relay.kick, SOURCE
        )

    # --- lifecycle of the service object -------------------------------------

    def start(self) -> None:
        self.relay.start()
        self.relay.kick()  # publish what a previous process committed but never sent

    def close(self) -> None:
        self.relay.close()
        self._retriever.close()

    def ready(self) -> None:
        self._store.ping()

    # --- tenants and namespaces ----------------------------------------------

    def create_tenant(self, name: str) -> TenantCreated:
        now = self._clock()
        tenant = TenantRecord(id=_new_id("t"), name=name, created_at=now)
        key, prefix, key_hash = generate_api_key()
        record = ApiKeyRecord(
            prefix=prefix,
            key_hash=key_hash,
            tenant=tenant.id,
            principal=f"{tenant.id}:admin",
            role="tenant_admin",
            created_at=now,
        )
        self._store.create_tenant(tenant, record)
        return TenantCreated(id=tenant.id, name=name, api_key=key)

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        return self._store.find_api_key(prefix)

    def create_namespace(self, caller: Caller, req: NamespaceCreate) -> NamespaceRecord:
        self.access.require_role(caller, *CREATOR_ROLES)
        ns = NamespaceRecord(
            id=_new_id("ns"),
            tenant=caller.tenant,
            name=req.name,
            description=req.description,
            created_at=self._clock(),
            policy=self._compliance.default_policy,
        )
        self._store.create_namespace(ns)
        self.access_admin.grant_creator(caller, ns.id)
        return ns

    def list_namespaces(self, caller: Caller) -> list[NamespaceRecord]:
        readable = set(self.access.readable(caller))
        return [ns for ns in self._store.list_namespaces(caller.tenant) if ns.id in readable]

    def get_namespace(self, caller: Caller, namespace_id: str) -> NamespaceRecord:
        """The namespace if the caller may read it, NotFound otherwise (vault/access.py)."""
        return self.access.require(caller, namespace_id, "read")

    # Compliance (services/vault/compliance.py, docs/compliance.md).
    def update_namespace_policy(
        self, caller: Caller, namespace_id: str, policy: NamespacePolicy
    ) -> NamespaceRecord:
        return self._governance.update_policy(
            caller, self.get_namespace(caller, namespace_id), policy
        )

    def export_namespace(self, caller: Caller, namespace_id: str) -> NamespaceExport:
        return self._governance.export(caller, self.get_namespace(caller, namespace_id))

    def get_export(self, caller: Caller, export_id: str) -> ExportRecord:
        return self._governance.get_export(caller, export_id)

    # --- writes ----------------------------------------------------------------

    @traced("vault.create_memories")
    def create_memories(
        self, caller: Caller, namespace_id: str, drafts: list[CubeDraft]
    ) -> list[MemCube]:
        ns = self.access.require(caller, namespace_id, "write")
        if not drafts:
            raise ValidationFailed("nothing to store")
        # PII policy, retention cap and legal hold, before anything is embedded.
        screened = self._compliance.screen_drafts(ns, drafts)
        drafts = [draft for draft, _ in screened]
        now = self._clock()
        vectors: list[np.ndarray] = []
        for start in range(0, len(drafts), EMBED_CHUNK):
            chunk = drafts[start : start + EMBED_CHUNK]
            vectors.extend(self._embedder.encode([d.embedding_text or d.text for d in chunk]))
            if len(drafts) > EMBED_CHUNK:
                log.info("ingest %s: embedded %d/%d", ns.id, start + len(chunk), len(drafts))
        batch = WriteBatch()
        cubes = []
        for (draft, sensitivity), vector in zip(screened, vectors, strict=True):
            cube = tagged(self._new_cube(caller, ns.id, draft, now), sensitivity)
            cubes.append(cube)
            batch.cubes.append(CubeWrite(cube=cube, embedding=vector))
            batch.events.append(
                self._event(
                    caller,
                    cube,
                    MemoryCreated(
                        cube_id=cube.id,
                        version=1,
                        tier=cube.tier,
                        origin=cube.origin,
                        semantic_type=cube.semantic_type,
                        tags=cube.tags,
                        sources=cube.sources,
                        event_time=cube.event_time,
                        expires_at=cube.governance.lifespan.expires_at,
                        principal=caller.principal,
                        # For the scheduler's KV cache budget and decay rule.
                        token_estimate=estimate_tokens(draft.text),
                        decay_half_life_seconds=cube.governance.lifespan.decay_half_life_seconds,
                        sensitivity_tags=sensitivity,
                    ),
                )
            )
        self._store.write(batch)
        self.relay.kick()
        return cubes

    def _new_cube(self, caller: Caller, ns: str, draft: CubeDraft, now: datetime) -> MemCube:
        ttl = draft.ttl_seconds
        lifespan = LifespanPolicy(
            ttl_seconds=ttl, expires_at=now + timedelta(seconds=ttl) if ttl else None
        )
        return MemCube(
            id=str(uuid.uuid4()),
            version=1,
            tenant=caller.tenant,
            namespace=ns,
            created_at=now,
            updated_at=now,
            event_time=draft.event_time,
            origin=draft.origin,
            semantic_type=draft.semantic_type,
            tags=draft.tags,
            sources=draft.sources,
            metadata=draft.metadata,
            governance=Governance(lifespan=lifespan, created_by=caller.principal),
            lifecycle=Lifecycle(state=LifecycleState.generated, reason="created", changed_at=now),
            payload=PlaintextPayload(text=draft.text, embedding_model=self._embedder.model_id),
        )

    @traced("vault.update_memory")
    def update_memory(self, caller: Caller, cube_id: str, patch: MemoryPatch) -> MemCube:
        old = self._live(caller, cube_id, "write")
        if patch.text is None and patch.metadata is None and patch.tags is None:
            raise ValidationFailed("nothing to change: give text, metadata or tags")
        now = self._clock()
        changed = [f for f in ("text", "metadata", "tags") if getattr(patch, f) is not None]
        ns = self._store.get_namespace(caller.tenant, old.namespace)
        if ns is None:
            raise NotFound(f"memory {cube_id!r} not found", code="memory_not_found")
        screened = self._compliance.screen_patch(
            ns,
            patch.text if patch.text is not None else (old.text or ""),
            patch.metadata if patch.metadata is not None else old.metadata,
            changed,
        )
        text = screened.text
        new = tagged(
            old.model_copy(
                update={
                    "version": old.version + 1,
                    "updated_at": now,
                    "metadata": screened.metadata,
                    "tags": patch.tags if patch.tags is not None else old.tags,
                    "payload": PlaintextPayload(text=text, embedding_model=self._embedder.model_id),
                    "lifecycle": Lifecycle(
                        state=old.lifecycle.state, reason="updated", changed_at=now
                    ),
                }
            ),
            screened.tags,
        )
        vector = self._embedder.encode([text])[0]
        event = MemoryUpdated(
            cube_id=cube_id,
            version=new.version,
            previous_version=old.version,
            changed=changed,
            principal=caller.principal,
            sensitivity_tags=screened.tags,
        )
        self._supersede(caller, old, new, vector, event, "updated")
        return new

    @traced("vault.delete_memory")
    def delete_memory(self, caller: Caller, cube_id: str) -> None:
        old = self._live(caller, cube_id, "write")
        ns = self._store.get_namespace(caller.tenant, old.namespace)
        if ns is not None:
            check_not_held(ns, "deleting a memory")
        now = self._clock()
        tomb = old.model_copy(
            update={
                "version": old.version + 1,
                "updated_at": now,
                "lifecycle": Lifecycle(
                    state=LifecycleState.deleted, reason="deleted by client", changed_at=now
                ),
            }
        )
        event = MemoryDeleted(cube_id=cube_id, version=tomb.version, principal=caller.principal)
        self._supersede(caller, old, tomb, None, event, "deleted")

    def _supersede(
        self,
        caller: Caller,
        old: MemCube,
        new: MemCube,
        vector: object,
        data: EventData,
        reason: str,
    ) -> None:
        batch = WriteBatch(
            cubes=[CubeWrite(cube=new, embedding=vector)],  # type: ignore[arg-type]
            superseded=[(old.id, old.version)],
            edges=[Edge(kind=EdgeKind.VERSION_OF, src=new.ref, dst=old.ref, reason=reason)],
            events=[self._event(caller, new, data)],
        )
        self._store.write(batch)
        self.relay.kick()

    def _event(self, caller: Caller, cube: MemCube, data: EventData) -> EventEnvelope:
        return make_event(
            data,
            source=SOURCE,
            tenant=caller.tenant,
            namespace=cube.namespace,
            traceparent=current_traceparent(),
            time=self._clock(),  # the injected clock: simulated time reaches consumers
        )

    # --- lifecycle (system operations: the scheduler's, for every tenant) ---------

    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]:
        return self._lifecycle.expire_due(now, limit)

    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube:
        return self._lifecycle.transition(tenant, cube_id, to, reason)

    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube:
        return self._lifecycle.merge(tenant, cube_ids, reason)

    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        return self._lifecycle.near_duplicates(tenant, cube_id, threshold, limit)

    # --- reads -----------------------------------------------------------------

    # Activation memory: the inference service's record of its KV caches.
    def record_activation(
        self,
        tenant: str,
        namespace: str,
        payload: ActivationPayload,
        reason: str,
        command_id: str | None = None,
    ) -> MemCube:
        return self._activations.record(tenant, namespace, payload, reason, command_id)

    def current_activation(self, tenant: str, namespace: str) -> MemCube | None:
        return self._activations.current(tenant, namespace)

    def demote_activation(
        self, tenant: str, namespace: str, target_id: str, reason: str
    ) -> MemCube | None:
        return self._activations.demote(tenant, namespace, target_id, reason)

    # Parametric memory: the trainer's record of its LoRA adapters.
    def record_adapter(
        self,
        tenant: str,
        namespace: str,
        payload: ParametricPayload,
        details: AdapterDetails,
        reason: str,
    ) -> AdapterRecord:
        return self._adapters.record(tenant, namespace, payload, details, reason)

    def get_adapter(self, tenant: str, adapter_id: str) -> AdapterRecord:
        return self._adapters.get(tenant, adapter_id)

    def list_adapters(self, tenant: str, namespace: str | None = None) -> list[AdapterRecord]:
        return self._adapters.listing(tenant, namespace)

    def adapters_containing(self, tenant: str, cube_id: str) -> list[AdapterRecord]:
        return self._adapters.containing(tenant, cube_id)

    def set_adapter_state(
        self,
        tenant: str,
        adapter_id: str,
        state: AdapterState,
        reason: str,
        stale_sources: Sequence[str] = (),
    ) -> AdapterRecord:
        return self._adapters.set_state(tenant, adapter_id, state, reason, stale_sources)

    # Right to erasure (services/vault/erasure.py).
    def erase(self, caller: Caller, req: ErasureRequest) -> ErasureReport:
        return self._erasures.erase(caller, req)

    def get_erasure(self, caller: Caller, erasure_id: str) -> ErasureReport:
        return self._erasures.get(caller, erasure_id)

    def _live(self, caller: Caller, cube_id: str, permission: str = "read") -> MemCube:
        cube = self._store.get_cube(caller.tenant, cube_id)
        if cube is None or cube.lifecycle.state == LifecycleState.deleted:
            raise NotFound(f"memory {cube_id!r} not found", code="memory_not_found")
        self._require_on_cube(caller, cube, permission)
        return cube

    def _require_on_cube(self, caller: Caller, cube: MemCube, permission: str) -> None:
        """A cube in a namespace the caller cannot read is as unknown as a foreign id."""
        try:
            self.access.require(caller, cube.namespace, permission)
        except NotFound:
            raise NotFound(f"memory {cube.id!r} not found", code="memory_not_found") from None

    def get_memory(self, caller: Caller, cube_id: str) -> MemCube:
        return self._live(caller, cube_id)

    def history(self, caller: Caller, cube_id: str) -> list[MemCube]:
        versions = self._store.history(caller.tenant, cube_id)
        if not versions:
            raise NotFound(f"memory {cube_id!r} not found", code="memory_not_found")
        self._require_on_cube(caller, versions[-1], "read")
        return versions

    def lineage(self, caller: Caller, cube_id: str) -> LineageResponse:
        self.history(caller, cube_id)  # 404 for unknown or foreign ids
        edges = self._store.edges(caller.tenant, cube_id)
        return LineageResponse(
            cube=cube_id,
            edges=[LineageEdge(kind=e.kind, src=e.src, dst=e.dst, reason=e.reason) for e in edges],
        )

    @traced("vault.search")
    def search(
        self, caller: Caller, req: SearchRequest, *, publish_access: bool = True
    ) -> SearchResponse:
        # No namespaces named: every namespace the caller may read. Named ones must
        # all be readable (404 otherwise). The store query gets only allowed ids.
        if req.namespaces:
            spaces = list(dict.fromkeys(req.namespaces))
            for ns in spaces:
                self.get_namespace(caller, ns)
        else:
            spaces = self.access.readable(caller)
            if not spaces:
                return SearchResponse(results=[])
        now = self._clock()
        found = self._retriever.search(
            caller.tenant,
            spaces,
            req.query,
            req.top_k,
            req.filters,
            now,
        )
        hits = [
            SearchHit(
                id=c.id,
                namespace=c.namespace,
                text=c.text or "",
                score=score,
                sources=c.sources,
                metadata=c.metadata,
                event_time=c.event_time,
                version=c.version,
            )
            for c, score in found
        ]
        if publish_access:
            self._publish_accessed(caller, found, req.session_id)
        return SearchResponse(results=hits)

    def record_access(self, caller: Caller, report: AccessReport) -> None:
        """memory.accessed for what a reader used (inference: the memories put in a
        prompt). Every cube is checked first, so a foreign id publishes nothing."""
        cubes = [self._live(caller, item.cube_id) for item in report.items]
        try:
            for item, cube in zip(report.items, cubes, strict=True):
                data = MemoryAccessed(
                    cube_id=cube.id,
                    version=item.version,
                    channel=report.channel,
                    query_id=report.query_id,
                    rank=item.rank,
                    score=item.score,
                    principal=caller.principal,
                    session_id=report.session_id,
                )
                self._bus.publish(data.topic, self._event(caller, cube, data), key=cube.id)
        except Exception as exc:  # statistics, as for searches: logged, not the caller's
            log.warning("memory.accessed not published for %s: %s", report.query_id, exc)

    def _publish_accessed(
        self, caller: Caller, found: list[tuple[MemCube, float]], session_id: str | None
    ) -> None:
        """Access facts feed the scheduler's usage statistics. They are not part of a
        write, so they go straight to the bus; a failure is logged, not the search's."""
        query_id = str(uuid.uuid4())
        try:
            for rank, (cube, score) in enumerate(found, start=1):
                data = MemoryAccessed(
                    cube_id=cube.id,
                    version=cube.version,
                    channel="search",
                    query_id=query_id,
                    rank=rank,
                    score=score,
                    principal=caller.principal,
                    session_id=session_id,
                )
                self._bus.publish(data.topic, self._event(caller, cube, data), key=cube.id)
        except Exception as exc:
            log.warning("memory.accessed not published for query %s: %s", query_id, exc)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
