"""Lifecycle operations of the vault: expiry, transitions, merges, near-duplicates.

These are system operations: the scheduler calls them for every tenant, so they
take the tenant as an argument rather than a Caller (the internal HTTP API
guards them with the service token). Every change goes through
shared.lifecycle.transition and is written the way every vault change is: a new
version of the cube, linked VERSION_OF to the one before, committed in one
GraphStore.write together with its events (transactional outbox).

Exactly once: a transition writes version n+1 of a cube read at version n, and
both stores refuse a version at or below the newest stored (``version_conflict``).
So when two expiry runs (or an expiry and an edit) race on one cube, one write
wins and only its event is committed; the loser's is never written. A cube that
is already expired is no longer "due", so a second run finds nothing to do.

Held cubes (``governance.legal_hold``, or ``retention_until`` still in the
future) do not expire: they keep their state and are expired by the first run
after the hold is lifted or the retention date passes. Search already hides
any cube past ``expires_at`` at query time, held or not. A namespace on legal
hold holds every cube in it; a namespace's ``retention_days`` makes cubes older
than that due too (reason "retention"), even ones stored before it was set.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np

from shared import lifecycle
from shared.errors import Conflict, FieldError, IllegalTransition, NotFound, ValidationFailed
from shared.ports.embedder import Embedder
from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.events import (
    EventData,
    EventEnvelope,
    MemoryCreated,
    MemoryDeleted,
    MemoryExpired,
    MemoryUpdated,
    make_event,
)
from shared.schemas.lifecycle_api import MAX_EXPIRE_BATCH, MAX_MERGE, MAX_NEAR
from shared.schemas.memcube import (
    Edge,
    EdgeKind,
    Governance,
    Lifecycle,
    LifecycleState,
    LifespanPolicy,
    MemCube,
    PlaintextPayload,
)
from shared.telemetry import current_traceparent, traced
from shared.tokens import estimate_tokens

log = logging.getLogger(__name__)

SYSTEM_PRINCIPAL = "system:lifecycle"  # who the events name for these operations
_SCOPE_ORDER = {"private": 0, "namespace": 1, "tenant": 2}  # most restrictive first


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field.split('.')[-1]}: {message}", [FieldError(field, message)])


def _not_found(cube_id: str) -> NotFound:
    return NotFound(f"memory {cube_id!r} not found", code="memory_not_found")


class ExpiryRules(Protocol):
    """Namespace-level rules of expiry (services/vault/compliance.py)."""

    def held_check(self) -> Callable[[MemCube], bool]:
        """Whether a cube's namespace is on legal hold (one check per expiry run)."""
        ...

    def retention_due(self, now: datetime, limit: int) -> list[MemCube]:
        """Up to ``limit`` cubes older than their namespace's retention (held
        namespaces left out)."""
        ...


def _held(cube: MemCube, now: datetime) -> bool:
    gov = cube.governance
    return gov.legal_hold or (gov.retention_until is not None and gov.retention_until > now)


def _past_ttl(cube: MemCube, now: datetime) -> bool:
    expires = cube.governance.lifespan.expires_at
    return expires is not None and expires <= now


class LifecycleOps:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        clock: Callable[[], datetime],
        committed: Callable[[], None],
        source: str,
        rules: ExpiryRules | None = None,
    ) -> None:
        self._store = store
        self._rules = rules  # namespace legal hold and retention (docs/compliance.md)
        self._embedder = embedder
        self._clock = clock
        self._committed = committed  # wakes the outbox relay
        self._source = source

    # --- expiry ------------------------------------------------------------------

    @traced("vault.expire_due")
    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]:
        if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
            raise _invalid("body.now", "must be a timezone-aware time")
        if not 1 <= limit <= MAX_EXPIRE_BATCH:
            raise _invalid("body.limit", f"must be between 1 and {MAX_EXPIRE_BATCH}")
        due = self._due(now, limit)
        batches = [self._expiry(c, now) for c in due]
        if self._rules is not None and len(due) < limit:
            seen = {c.id for c in due}
            for cube in self._rules.retention_due(now, limit - len(due)):
                if cube.id not in seen and not _held(cube, now):
                    batches.append(self._expiry(cube, now, "retention"))
        if not batches:
            return []
        try:
            self._store.write(_combine(batches))
            done = [b.cubes[0].cube.id for b in batches]
        except Conflict:
            # Someone changed one of them meanwhile (another run, an edit): go one
            # by one, and leave the cubes whose write lost to the winner's.
            done = []
            for b in batches:
                try:
                    self._store.write(b)
                    done.append(b.cubes[0].cube.id)
                except Conflict as exc:
                    log.info("expiry of %s skipped: %s", b.cubes[0].cube.id, exc.detail)
        self._committed()
        return done

    def _due(self, now: datetime, limit: int) -> list[MemCube]:
        """Up to ``limit`` due cubes that are not held. Held cubes stay due for ever,
        so the page grows past them rather than returning the same held ones each run."""
        fetch = limit
        ns_held = self._rules.held_check() if self._rules is not None else None
        while True:
            due = self._store.due_for_expiry(now, fetch)
            free = [c for c in due if not _held(c, now) and not (ns_held and ns_held(c))]
            if len(free) >= limit or len(due) < fetch:
                return free[:limit]
            fetch *= 2

    def _expiry(self, cube: MemCube, now: datetime, reason: str = "ttl") -> WriteBatch:
        life = lifecycle.transition(cube.lifecycle, LifecycleState.expired, reason, now)
        new = _next(cube, life, now)
        data = MemoryExpired(
            cube_id=cube.id,
            version=new.version,
            reason=reason,
            previous_state=cube.lifecycle.state,
        )
        return self._batch(cube, new, None, data, now)

    # --- one transition ------------------------------------------------------------

    @traced("vault.transition")
    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube:
        why = lifecycle.check_reason(reason)
        try:
            target = LifecycleState(to)
        except ValueError:
            raise _invalid("body.to", f"unknown lifecycle state {to!r}") from None
        if target == LifecycleState.merged:
            raise _invalid("body.to", "use merge: a merged memory needs the memory it went into")
        cube = self._store.get_cube(tenant, cube_id)
        if cube is None:
            raise _not_found(cube_id)
        now = self._clock()
        new = _next(cube, lifecycle.transition(cube.lifecycle, target, why, now), now)
        data: EventData
        if target == LifecycleState.expired:
            data = MemoryExpired(
                cube_id=cube.id,
                version=new.version,
                reason=why,
                previous_state=cube.lifecycle.state,
            )
        elif target == LifecycleState.deleted:
            data = MemoryDeleted(
                cube_id=cube.id, version=new.version, reason=why, principal=SYSTEM_PRINCIPAL
            )
        else:
            data = MemoryUpdated(
                cube_id=cube.id,
                version=new.version,
                previous_version=cube.version,
                changed=["lifecycle"],
                principal=SYSTEM_PRINCIPAL,
                # The content did not change; consumers keep counting what it holds.
                sensitivity_tags=cube.governance.sensitivity_tags,
            )
        # A cube that stays searchable (activated <-> generated) keeps its vector.
        vector = self._vector(cube) if new.searchable else None
        self._store.write(self._batch(cube, new, vector, data, now))
        self._committed()
        return new

    # --- merge -----------------------------------------------------------------------

    @traced("vault.merge")
    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube:
        """Near-duplicates become one new plaintext cube; the originals are retired.

        The new cube carries the text of the most recent original (event time when
        known, else when it was last written; the longest on a tie). Merging must
        never bring back a statement that a later one corrected ("moved to Lisbon"
        then "moved to Porto" are near-duplicates too), and near-duplicates above
        a high threshold carry the same facts anyway. Tags, sources and
        sensitivity tags are unioned; the lifespan is the longest of the
        originals' (none if any has none); holds and retention are kept.
        """
        why = lifecycle.check_reason(reason)
        ids = list(cube_ids)
        if len(set(ids)) != len(ids):
            raise _invalid("body.cube_ids", "names a memory twice")
        if not 2 <= len(ids) <= MAX_MERGE:
            raise _invalid("body.cube_ids", f"give between 2 and {MAX_MERGE} memories")
        found = {
            c.id: c
            for c in self._store.get_current(tenant, ids)
            if c.lifecycle.state != LifecycleState.deleted
        }
        if missing := [i for i in ids if i not in found]:
            raise NotFound(f"memory {missing[0]!r} not found", code="memory_not_found")
        cubes = [found[i] for i in ids]
        now = self._clock()
        _check_mergeable(cubes, now)
        primary = max(cubes, key=lambda c: (c.event_time or c.updated_at, len(c.text or "")))
        merged = self._merged_cube(tenant, cubes, primary, why, now)
        parts = [
            WriteBatch(
                cubes=[CubeWrite(cube=merged, embedding=self._vector(primary))],
                events=[self._event(merged, _created(merged), now)],
            )
        ]
        for c in cubes:
            new = _next(c, lifecycle.transition(c.lifecycle, LifecycleState.merged, why, now), now)
            updated = MemoryUpdated(
                cube_id=c.id,
                version=new.version,
                previous_version=c.version,
                changed=["lifecycle"],
                principal=SYSTEM_PRINCIPAL,
                sensitivity_tags=c.governance.sensitivity_tags,
            )
            parts.append(self._batch(c, new, None, updated, now))
            parts[-1].edges.append(
                Edge(
                    kind=EdgeKind.MERGED_INTO, src=c.ref, dst=merged.ref, created_at=now, reason=why
                )
            )
        batch = _combine(parts)
        self._store.write(batch)
        self._committed()
        return merged

    def _merged_cube(
        self, tenant: str, cubes: list[MemCube], primary: MemCube, why: str, now: datetime
    ) -> MemCube:
        govs = [c.governance for c in cubes]
        ends = [g.lifespan.expires_at for g in govs]
        retention = [g.retention_until for g in govs if g.retention_until is not None]
        metadata: dict[str, object] = {}
        for c in [*(c for c in cubes if c is not primary), primary]:  # the primary's win
            metadata.update(c.metadata)
        metadata["merged_from"] = [c.ref for c in cubes]
        return MemCube(
            id=str(uuid.uuid4()),
            version=1,
            tenant=tenant,
            namespace=primary.namespace,
            created_at=now,
            updated_at=now,
            event_time=primary.event_time,
            origin=primary.origin,
            semantic_type=primary.semantic_type,
            tags=list(dict.fromkeys(t for c in cubes for t in c.tags)),
            sources=list(dict.fromkeys(s for c in cubes for s in c.sources)),
            metadata=metadata,
            governance=Governance(
                access_scope=min((g.access_scope for g in govs), key=_SCOPE_ORDER.__getitem__),
                lifespan=LifespanPolicy(
                    expires_at=None if None in ends else max(e for e in ends if e is not None)
                ),
                priority=max(g.priority for g in govs),
                sensitivity_tags=list(dict.fromkeys(t for g in govs for t in g.sensitivity_tags)),
                watermark=primary.governance.watermark,
                retention_until=max(retention) if retention else None,
                legal_hold=any(g.legal_hold for g in govs),
            ),
            lifecycle=Lifecycle(
                state=LifecycleState.generated, reason=f"merged: {why}", changed_at=now
            ),
            payload=PlaintextPayload(
                text=primary.text or "", embedding_model=self._embedder.model_id
            ),
        )

    # --- near-duplicates ---------------------------------------------------------------

    @traced("vault.near_duplicates")
    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        """Other current, searchable plaintext cubes of the cube's namespace whose
        embedding's cosine similarity to its own is at least ``threshold``, best
        first. A cube that is itself out of search has none."""
        if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
            raise _invalid("query.threshold", "must be a cosine similarity between -1 and 1")
        if not 1 <= limit <= MAX_NEAR:
            raise _invalid("query.limit", f"must be between 1 and {MAX_NEAR}")
        cube = self._store.get_cube(tenant, cube_id)
        if cube is None or cube.lifecycle.state == LifecycleState.deleted:
            raise _not_found(cube_id)
        now = self._clock()
        if not cube.searchable or cube.text is None or _past_ttl(cube, now):
            return []
        vector = self._store.get_embedding(tenant, cube_id, cube.version)
        if vector is None:
            return []
        # Room for the cube itself and for candidates the checks below drop.
        hits = self._store.vector_search(tenant, [cube.namespace], vector, 2 * limit + 1)
        scores = {h.cube_id: h.score for h in hits if h.cube_id != cube_id and h.score >= threshold}
        alive = {
            c.id
            for c in self._store.get_current(tenant, list(scores))
            if c.searchable and c.text is not None and not _past_ttl(c, now)
        }
        ranked = sorted(((i, s) for i, s in scores.items() if i in alive), key=lambda x: -x[1])
        return ranked[:limit]

    # --- helpers ---------------------------------------------------------------------

    def _vector(self, cube: MemCube) -> np.ndarray | None:
        """The stored vector (it may have been computed with context); else re-embed."""
        stored = self._store.get_embedding(cube.tenant, cube.id, cube.version)
        if stored is not None or cube.text is None:
            return stored
        return self._embedder.encode([cube.text])[0]

    def _batch(
        self,
        old: MemCube,
        new: MemCube,
        vector: np.ndarray | None,
        data: EventData,
        now: datetime,
    ) -> WriteBatch:
        return WriteBatch(
            cubes=[CubeWrite(cube=new, embedding=vector)],
            superseded=[(old.id, old.version)],
            edges=[
                Edge(
                    kind=EdgeKind.VERSION_OF,
                    src=new.ref,
                    dst=old.ref,
                    created_at=now,
                    reason=new.lifecycle.reason,
                )
            ],
            events=[self._event(new, data, now)],
        )

    def _event(self, cube: MemCube, data: EventData, now: datetime) -> EventEnvelope:
        return make_event(
            data,
            source=self._source,
            tenant=cube.tenant,
            namespace=cube.namespace,
            traceparent=current_traceparent(),
            time=now,
        )


def _next(cube: MemCube, life: Lifecycle, now: datetime) -> MemCube:
    return cube.model_copy(
        update={"version": cube.version + 1, "updated_at": now, "lifecycle": life}
    )


def _combine(batches: list[WriteBatch]) -> WriteBatch:
    out = WriteBatch()
    for b in batches:
        out.cubes += b.cubes
        out.superseded += b.superseded
        out.edges += b.edges
        out.events += b.events
    return out


def _created(cube: MemCube) -> MemoryCreated:
    return MemoryCreated(
        cube_id=cube.id,
        version=cube.version,
        tier=cube.tier,
        origin=cube.origin,
        semantic_type=cube.semantic_type,
        tags=cube.tags,
        sources=cube.sources,
        event_time=cube.event_time,
        expires_at=cube.governance.lifespan.expires_at,
        principal=SYSTEM_PRINCIPAL,
        # For the scheduler's KV cache budget and decay rule, as on a client's write.
        token_estimate=estimate_tokens(cube.text),
        decay_half_life_seconds=cube.governance.lifespan.decay_half_life_seconds,
        sensitivity_tags=cube.governance.sensitivity_tags,
    )


def _check_mergeable(cubes: list[MemCube], now: datetime) -> None:
    """One namespace, plaintext, searchable, not past their TTL; else a 4xx naming it."""
    namespaces = sorted({c.namespace for c in cubes})
    if len(namespaces) > 1:
        raise _invalid("body.cube_ids", f"memories of one namespace only; got {namespaces}")
    for c in cubes:
        if c.text is None:
            raise _invalid("body.cube_ids", f"memory {c.id!r} is not plaintext ({c.tier})")
        if not lifecycle.allowed(c.lifecycle.state, LifecycleState.merged):
            raise IllegalTransition(
                str(c.lifecycle.state),
                str(LifecycleState.merged),
                f"memory {c.id!r} is {c.lifecycle.state}; only generated or activated"
                " memories can be merged",
            )
        if _past_ttl(c, now):
            raise Conflict(
                f"memory {c.id!r} reached its TTL; an expired memory cannot be merged",
                code="memory_expired",
            )
