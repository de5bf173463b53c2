"""The scheduler's policies: pure functions from a namespace's state to decisions.

Each takes the namespace's record (``Space``), the tick time (epoch seconds)
and the namespace's policy settings, and returns ``Decision`` records; none
changes state, reads a clock or calls another service. The engine
(services.scheduler.engine) applies the decisions and sends their commands.
Every reason names the numbers that caused it, so ``explain`` can show them.
Iteration orders are sorted so the same state always gives the same list.
"""

from __future__ import annotations

from typing import Any

from services.scheduler.decisions import Decision, Kind
from services.scheduler.scores import decayed, hotness, jaccard, stability
from services.scheduler.spaces import IDX_FREQ, IDX_FREQ_AT, IDX_LAST, IDX_TOKENS, Member, Space
from shared.settings import SchedulerPolicy


def hot_scores(space: Space, now: float, policy: SchedulerPolicy) -> dict[str, float]:
    """Hotness of every member that was ever accessed (the others score 0)."""
    return {
        cube: hotness(row[IDX_FREQ], row[IDX_FREQ_AT], row[IDX_LAST], now, policy)
        for cube, row in space.members.items()
        if row[IDX_LAST] is not None
    }


def newest_cache(space: Space) -> tuple[str, dict[str, Any]] | None:
    if not space.caches:
        return None
    target = max(space.caches, key=lambda t: (space.caches[t]["at"], t))
    return target, space.caches[target]


def plan_activation(
    space: Space, hot: dict[str, float], now: float, policy: SchedulerPolicy
) -> list[Decision]:
    """Hot plaintext → activation: one KV cache per namespace over its hot set,
    hottest first within the token budget; rebuilt only when the set moved."""
    if space.pending_of(Kind.activate):
        return []
    if space.last_build_at is not None and now - space.last_build_at < policy.build_cooldown_s:
        return []
    ranked = sorted((-h, cube) for cube, h in hot.items() if h >= policy.hot_min_hotness)
    chosen: list[str] = []
    tokens = 0
    for _, cube in ranked:
        size = space.members[cube][IDX_TOKENS] or policy.tokens_per_cube
        if tokens + size > policy.token_budget:
            continue  # a smaller cube further down may still fit
        chosen.append(cube)
        tokens += size
    if len(chosen) < policy.hot_min_cubes:
        return []
    numbers = {
        "cubes": len(chosen),
        "tokens": tokens,
        "token_budget": policy.token_budget,
        "min_hotness": hot[chosen[-1]],
        "max_hotness": hot[chosen[0]],
        "hot_min_hotness": policy.hot_min_hotness,
    }
    current = newest_cache(space)
    why = (
        f"hot set of {len(chosen)} cubes, {tokens} of {policy.token_budget} tokens, "
        f"hotness {hot[chosen[-1]]:.2f}..{hot[chosen[0]]:.2f} >= {policy.hot_min_hotness}"
    )
    replaces = None
    if current is None:
        why += "; no KV cache yet"
    else:
        replaces, cache = current
        cached = set(cache["cube_ids"])
        overlap = jaccard(cached, set(chosen), hot)
        # A hot set inside the cache is served by it already (the set shrinks as
        # the namespace cools): leave it to eviction rather than rebuild smaller.
        if overlap >= policy.rebuild_jaccard or cached.issuperset(chosen):
            return []
        numbers["jaccard"] = overlap
        why += f"; weighted Jaccard {overlap:.2f} < {policy.rebuild_jaccard} with {replaces}"
    return [
        Decision.make(
            Kind.activate,
            space.tenant,
            space.namespace,
            chosen,
            why,
            now,
            target_id=replaces,
            numbers=numbers,
        )
    ]


def plan_eviction(
    space: Space, hot: dict[str, float], now: float, policy: SchedulerPolicy
) -> list[Decision]:
    """Activation caches that went cold, were superseded by a newer cache, or hold
    a source that changed → evicted (the cache would serve stale or erased text)."""
    current = newest_cache(space)
    out = []
    for target, cache in sorted(space.caches.items()):
        ids = cache["cube_ids"]
        mean = sum(hot.get(c, 0.0) for c in ids) / max(1, len(ids))
        numbers = {"mean_hotness": mean, "evict_max_hotness": policy.evict_max_hotness}
        if current is not None and target != current[0]:
            why = f"superseded by cache {current[0]}"
        elif cache["invalid"]:
            numbers["invalid"] = len(cache["invalid"])
            why = f"{len(cache['invalid'])} of its {len(ids)} sources changed since it was built"
        elif mean < policy.evict_max_hotness:
            why = (
                f"cold: mean hotness {mean:.3f} < {policy.evict_max_hotness} over {len(ids)} cubes"
            )
        else:
            continue
        out.append(
            Decision.make(
                Kind.evict,
                space.tenant,
                space.namespace,
                ids,
                why,
                now,
                target_id=target,
                numbers=numbers,
            )
        )
    return out


def plan_training(space: Space, now: float, policy: SchedulerPolicy) -> list[Decision]:
    """Stable plaintext → parametric: one batch per namespace when enough stable
    cubes not yet in an adapter have gathered and the cooldown has passed."""
    if space.pending_of(Kind.train):
        return []
    if space.last_train_at is not None and now - space.last_train_at < policy.train_cooldown_s:
        return []
    covered = {c for a in space.adapters.values() for c in a["cube_ids"]}
    ranked = []
    for cube, row in space.members.items():
        if cube in covered:
            continue
        m = Member.from_list(row)
        score = stability(m.born, m.last_edit, m.sessions, now, policy)
        if score >= policy.train_min_stability:
            ranked.append((-score, cube))
    if len(ranked) < policy.train_min_batch:
        return []
    ranked.sort()
    chosen = [cube for _, cube in ranked[: policy.train_max_batch]]
    why = (
        f"{len(ranked)} stable cubes (stability >= {policy.train_min_stability}: "
        f"{policy.stable_age_s / 86400:g} d old, {policy.stable_quiet_s / 86400:g} d unedited, "
        f"{policy.stable_sessions} sessions) >= batch of {policy.train_min_batch}; "
        f"{len(chosen)} sent"
    )
    numbers = {
        "stable": len(ranked),
        "batch": len(chosen),
        "min_stability": -ranked[len(chosen) - 1][0],
        "train_min_batch": policy.train_min_batch,
    }
    return [
        Decision.make(Kind.train, space.tenant, space.namespace, chosen, why, now, numbers=numbers)
    ]


def plan_retirement(space: Space, now: float, policy: SchedulerPolicy) -> list[Decision]:
    """Parametric → plaintext: an adapter is retired once too large a share of its
    sources was edited, deleted or expired (it would keep answering with them)."""
    out = []
    for target, adapter in sorted(space.adapters.items()):
        ids, invalid = adapter["cube_ids"], adapter["invalid"]
        share = len(invalid) / max(1, len(ids))
        if share < policy.retire_fraction:
            continue
        why = (
            f"{len(invalid)} of its {len(ids)} sources edited, deleted or expired "
            f"({share:.0%} >= {policy.retire_fraction:.0%})"
        )
        out.append(
            Decision.make(
                Kind.retire,
                space.tenant,
                space.namespace,
                ids,
                why,
                now,
                target_id=target,
                numbers={"invalid": len(invalid), "share": share},
            )
        )
    return out


def plan_decay(space: Space, now: float, policy: SchedulerPolicy) -> list[Decision]:
    """Lifespan decay rule: a cube whose vitality fell under the floor expires."""
    out = []
    for cube, row in sorted(space.members.items()):
        m = Member.from_list(row)
        if m.decay_half_life_s is None or m.vitality_at is None:
            continue
        value = decayed(m.vitality, m.vitality_at, now, m.decay_half_life_s)
        if value >= policy.decay_floor:
            continue
        why = (
            f"decay rule: vitality {value:.3f} < floor {policy.decay_floor} "
            f"(half-life {m.decay_half_life_s:g} s)"
        )
        numbers = {"vitality": value, "decay_floor": policy.decay_floor}
        out.append(
            Decision.make(
                Kind.expire_decay,
                space.tenant,
                space.namespace,
                [cube],
                why,
                now,
                numbers=numbers,
            )
        )
    return out


def plan_timeouts(space: Space, now: float, policy: SchedulerPolicy) -> list[Decision]:
    """Commands never confirmed: forgotten, so the policy may issue them again."""
    out = []
    for cid, cmd in sorted(space.pending.items()):
        limit = policy.build_timeout_s if cmd["kind"] == Kind.activate else policy.train_timeout_s
        waited = now - cmd["at"]
        if waited <= limit:
            continue
        why = f"{cmd['kind']} command {cid} unconfirmed after {waited:.0f} s (> {limit:g} s)"
        out.append(
            Decision.make(
                Kind.timeout,
                space.tenant,
                space.namespace,
                cmd["cube_ids"],
                why,
                now,
                target_id=cid,
                numbers={"waited_s": waited},
            )
        )
    return out
