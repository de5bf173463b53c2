"""The scheduler's engine: usage in, decisions and commands out.

``Scheduler`` ties the pieces together over three mappings, each a dict in
embedded mode or a faust Table in distributed mode:

* ``cubes``: cube id → usage record (services.scheduler.usage.CubeUsage);
* ``spaces``: namespace id → namespace record (services.scheduler.spaces.Space);
* ``journal``: cube id → the last decisions about the cube (for explain).

Two entry points, both deterministic in their inputs:

* ``process(deliveries)`` applies a batch of events: per-cube usage, then the
  namespace facts (memory.promoted / demoted), then refreshes the namespace
  summaries of the cubes the batch touched. No clock, no I/O.
* ``tick(now)`` runs the policies (services.scheduler.policies) for every
  namespace at time ``now`` and applies their decisions: state first, then the
  vault calls (expire, merge) and the commands it returns for the caller to
  publish. A crash after the state write and before the publish loses those
  commands; the pending timeout lets the policy issue them again (at most a
  delay, never a duplicate of a command that was sent).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from services.scheduler import policies
from services.scheduler.decisions import Decision, Kind
from services.scheduler.scores import Scores
from services.scheduler.spaces import Space, Summary
from services.scheduler.usage import BatchResult, CubeUsage, Delivery, UsageProcessor
from shared.errors import IllegalTransition, MemgridError, NotFound
from shared.schemas.commands import (
    SCHEDULER_SOURCE,
    BuildActivation,
    Command,
    EvictActivation,
    RetireAdapter,
    TrainAdapter,
    make_command,
)
from shared.schemas.events import EventEnvelope, MemoryDemoted, MemoryPromoted, make_event
from shared.schemas.memcube import LifecycleState, MemCube, Tier
from shared.settings import SchedulerSettings

log = logging.getLogger(__name__)

# Namespace-wide facts the engine reads besides the per-cube ones (usage.TRACKED_TOPICS).
FACT_TOPICS: tuple[str, ...] = (MemoryPromoted.topic, MemoryDemoted.topic)


@runtime_checkable
class LifecycleVault(Protocol):
    """The part of the VaultAPI the scheduler calls (shared.ports.vault)."""

    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]: ...
    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube: ...
    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube: ...
    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]: ...


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: a command or the scheduler's own memory.demoted."""

    topic: str
    key: str
    event: EventEnvelope


@dataclass
class TickResult:
    decisions: list[Decision] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        cubes: MutableMapping[str, Any],
        spaces: MutableMapping[str, Any],
        journal: MutableMapping[str, Any],
        vault: LifecycleVault | None = None,
    ) -> None:
        self.settings = settings
        self.cubes, self.spaces, self.journal = cubes, spaces, journal
        self.vault = vault
        self.usage = UsageProcessor(
            cubes,
            recent_event_ids=settings.recent_event_ids,
            max_tracked_members=settings.max_tracked_members,
            half_life_s=settings.policy.half_life_s,
        )

    # --- events ------------------------------------------------------------------

    def process(self, deliveries: Sequence[Delivery]) -> BatchResult:
        result = self.usage.process(deliveries)
        self.apply_facts(d.event for d in deliveries)
        self.observe(filter(None, map(self.usage.usage, result.touched)))
        return result

    def apply_facts(self, events: Iterable[EventEnvelope]) -> int:
        """memory.promoted / memory.demoted into their namespaces' records."""
        applied = 0
        for event in events:
            if event.topic not in FACT_TOPICS or not event.namespace:
                continue
            try:
                fact = event.parse()
            except ValueError:
                log.warning("ignoring malformed %s event %s", event.topic, event.id)
                continue
            assert isinstance(fact, MemoryPromoted | MemoryDemoted)
            space = self._space(event.namespace, event.tenant)
            if space.apply_fact(event.id, fact, event.time.timestamp()):
                self.spaces[space.namespace] = space.to_dict()
                applied += 1
        return applied

    def observe(self, records: Iterable[CubeUsage]) -> None:
        """Refreshes the namespace summaries of ``records`` (one write per namespace)."""
        grouped: dict[str, tuple[str, list[Summary]]] = {}
        for record in records:
            if record.namespace:
                entry = grouped.setdefault(record.namespace, (record.tenant, []))
                entry[1].append(Summary.of(record))
        for namespace, (tenant, summaries) in grouped.items():
            self.observe_summaries(namespace, tenant, summaries)

    def observe_summaries(self, namespace: str, tenant: str, summaries: Iterable[Summary]) -> bool:
        """Applies cube summaries to one namespace's record; writes it once if it changed.
        (Distributed mode: called by the namespace's worker with the summaries the
        cubes' workers sent.)"""
        space = self._space(namespace, tenant)
        changed = False
        for summary in summaries:
            changed = space.observe_summary(summary) or changed
        if changed:
            self.spaces[namespace] = space.to_dict()
        return changed

    # --- ticks -------------------------------------------------------------------

    def tick(self, now: datetime, *, sweep: bool = True) -> TickResult:
        """Runs every policy at ``now`` (the injected clock's time) for every namespace
        of ``spaces``. ``sweep`` False leaves out the TTL sweep (vault.expire_due),
        which covers all namespaces at once: in distributed mode one worker runs it."""
        result = TickResult()
        expired = self._expire_ttl(now, result) if sweep else {}
        t = now.timestamp()
        for namespace in sorted(self.spaces):
            space = Space.from_dict(self.spaces[namespace])
            space.forget(expired.get(namespace, []), "expired")
            self._tick_space(space, t, result)
            self.spaces[namespace] = space.to_dict()
        self.journal_decisions(result.decisions)
        return result

    def _tick_space(self, space: Space, now: float, result: TickResult) -> None:
        policy = self.settings.policy_for(space.namespace)
        for decision in policies.plan_timeouts(space, now, policy):
            space.pending.pop(decision.target_id or "", None)
            result.decisions.append(decision)
        if self.vault is not None:
            self._decay(space, now, result)
            self._merge(space, now, result)
        hot = policies.hot_scores(space, now, policy)
        planned = [
            *policies.plan_eviction(space, hot, now, policy),
            *policies.plan_retirement(space, now, policy),
        ]
        for decision in planned:  # before activation/training: they free cubes
            self._apply(space, decision, policy.token_budget, result)
        planned = [
            *policies.plan_activation(space, hot, now, policy),
            *policies.plan_training(space, now, policy),
        ]
        for decision in planned:
            self._apply(space, decision, policy.token_budget, result)

    def _apply(self, space: Space, d: Decision, budget: int, result: TickResult) -> None:
        result.decisions.append(d)
        common: dict[str, Any] = {
            "command_id": d.command_id,
            "namespace": d.namespace,
            "reason": d.reason,
            "issued_at": d.when,
        }
        command: Command
        if d.kind in (Kind.activate, Kind.train):
            space.pending[d.command_id] = {"kind": str(d.kind), "cube_ids": list(d.cube_ids)}
            space.pending[d.command_id]["at"] = d.at
            if d.kind == Kind.activate:
                space.last_build_at = d.at
                command = BuildActivation(
                    **common, cube_ids=list(d.cube_ids), token_budget=budget, replaces=d.target_id
                )
            else:
                space.last_train_at = d.at
                command = TrainAdapter(**common, cube_ids=list(d.cube_ids))
            self._send(result, space, command)
            return
        target = d.target_id or ""
        if d.kind == Kind.evict:
            space.caches.pop(target, None)
            command = EvictActivation(**common, target_id=target, cube_ids=list(d.cube_ids))
            tiers = (Tier.activation, Tier.plaintext)
        else:
            invalid = space.adapters.pop(target, {}).get("invalid", [])
            command = RetireAdapter(
                **common, target_id=target, cube_ids=list(d.cube_ids), invalidated=invalid
            )
            tiers = (Tier.parametric, Tier.plaintext)
        space.gone.append(target)
        del space.gone[:-64]
        self._send(result, space, command)
        demoted = MemoryDemoted(
            cube_ids=list(d.cube_ids),
            from_tier=tiers[0],
            to_tier=tiers[1],
            target_id=target,
            reason=d.reason,
            command_id=d.command_id,
        )
        event = make_event(
            demoted, source=SCHEDULER_SOURCE, tenant=d.tenant, namespace=d.namespace, time=d.when
        )
        event = event.model_copy(update={"id": _derived_id(d.command_id, "demoted")})
        result.messages.append(Outgoing(MemoryDemoted.topic, d.namespace, event))

    @staticmethod
    def _send(result: TickResult, space: Space, command: Command) -> None:
        event = make_command(command, tenant=space.tenant)
        result.messages.append(Outgoing(command.topic, space.namespace, event))

    # --- lifespan and merges (the vault does the work) ---------------------------

    def _expire_ttl(self, now: datetime, result: TickResult) -> dict[str, list[str]]:
        if self.vault is None:
            return {}
        try:
            ids = self.vault.expire_due(now, limit=self.settings.expire_limit)
        except MemgridError as exc:  # the vault is down: the next tick tries again
            log.warning("expire_due failed: %s", exc)
            return {}
        by_namespace: dict[str, list[str]] = {}
        for cube in ids:
            record = self.usage.usage(cube)
            tenant, namespace = ("", "") if record is None else (record.tenant, record.namespace)
            expires = record.expires_at if record is not None else None
            why = "TTL reached" + (
                "" if expires is None else f": expires_at {_iso(expires)} <= {now.isoformat()}"
            )
            result.decisions.append(
                Decision.make(
                    Kind.expire_ttl, tenant, namespace or "", [cube], why, now.timestamp()
                )
            )
            by_namespace.setdefault(namespace or "", []).append(cube)
        return by_namespace

    def _decay(self, space: Space, now: float, result: TickResult) -> None:
        assert self.vault is not None
        for decision in policies.plan_decay(space, now, self.settings.policy_for(space.namespace)):
            cube = decision.cube_ids[0]
            try:
                self.vault.transition(space.tenant, cube, LifecycleState.expired, decision.reason)
            except (NotFound, IllegalTransition) as exc:
                # Deleted, merged or expired meanwhile: nothing to decide, forget it.
                log.info("not expiring %s: %s", cube, exc)
                space.forget([cube], "expired")
                continue
            except MemgridError as exc:  # unavailable: the next tick tries again
                log.warning("expiring %s failed: %s", cube, exc)
                continue
            space.forget([cube], "expired")
            self.retire_cubes([cube], "expired")
            result.decisions.append(decision)

    def _merge(self, space: Space, now: float, result: TickResult) -> None:
        assert self.vault is not None
        policy = self.settings.policy_for(space.namespace)
        if policy.merge_threshold >= 1.0:
            space.dedupe = []
            return
        # Each check is a vector search; a bulk ingest of thousands of cubes would
        # otherwise make one tick last minutes (and, distributed, hold the namespace
        # table that long). The rest of the queue waits for the next tick.
        budget = policy.merge_checks_per_tick
        queue, space.dedupe = space.dedupe[:budget], space.dedupe[budget:]
        for cube in queue:
            if cube not in space.members:
                continue  # merged or expired meanwhile
            try:
                found = self.vault.near_duplicates(
                    space.tenant, cube, policy.merge_threshold, policy.merge_limit
                )
                dups = sorted((c, s) for c, s in found if c != cube and c in space.members)
                if not dups:
                    continue
                ids = [cube, *(c for c, _ in dups)]
                why = f"near-duplicates: cosine {', '.join(f'{c}={s:.3f}' for c, s in dups)}"
                why += f" >= {policy.merge_threshold}"
                merged = self.vault.merge(space.tenant, ids, why)
            except MemgridError as exc:
                log.warning("merge check of %s failed: %s", cube, exc)
                continue
            numbers = {"max_similarity": max(s for _, s in dups)}
            decision = Decision.make(
                Kind.merge, space.tenant, space.namespace, ids, why, now, numbers=numbers
            )
            result.decisions.append(replace(decision, target_id=merged.id))  # the new cube
            space.forget(ids, "merged")
            self.retire_cubes(ids, "merged")

    def retire_cubes(self, cube_ids: Sequence[str], state: str) -> None:
        """Marks cubes the scheduler took out of play, so that their later events
        (a lifecycle memory.updated) do not bring them back into the namespace.
        Distributed mode overrides it (and ``journal_decisions``): the cube's
        record lives on the worker that owns the cube, so it sends that one a note."""
        for cube in cube_ids:
            record = self.usage.usage(cube)
            if record is not None and record.retired is None:
                record.retired = state
                self.cubes[cube] = record.to_dict()

    # --- explain -----------------------------------------------------------------

    def journal_decisions(self, decisions: list[Decision]) -> None:
        keep = self.settings.decision_history
        for d in decisions:
            entry = d.entry()
            for cube in d.cube_ids:
                past = list(self.journal.get(cube) or [])
                past.append(entry)
                self.journal[cube] = past[-keep:]

    def explain(
        self, cube_id: str, now: datetime, *, tenant: str | None = None
    ) -> dict[str, Any] | None:
        """The JSON-ready usage of one cube at ``now``: counters, scores, where it is
        served from, and the last decisions about it with their reasons. None when
        the scheduler knows nothing of the cube (or it belongs to another tenant)."""
        return explain(self, cube_id, now, tenant=tenant)

    def _space(self, namespace: str, tenant: str) -> Space:
        data = self.spaces.get(namespace)
        return Space(namespace, tenant) if data is None else Space.from_dict(data)


def explain(
    scheduler: Scheduler, cube_id: str, now: datetime, *, tenant: str | None = None
) -> dict[str, Any] | None:
    record = scheduler.usage.usage(cube_id)
    if record is None or (tenant is not None and record.tenant != tenant):
        return None
    policy = scheduler.settings.policy_for(record.namespace)
    scores = Scores.of(record, now.timestamp(), policy)
    decisions = list(scheduler.journal.get(cube_id) or [])
    view = record.view(
        capped_at=scheduler.settings.max_tracked_members, scores=scores, decisions=decisions
    )
    space = scheduler.spaces.get(record.namespace or "") or {}
    for kind in ("caches", "adapters"):  # where the cube is served from besides plaintext
        targets = space.get(kind, {})
        view[kind] = sorted(t for t, v in targets.items() if cube_id in v["cube_ids"])
    view["as_of"] = now.isoformat()
    return view


def _derived_id(command_id: str, what: str) -> str:
    return str(uuid.uuid5(uuid.UUID(command_id), what))


def _iso(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat()
