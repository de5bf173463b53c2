"""The scheduler's scores, defined in this one place (docs/scheduler.md).

Every function here is pure: it takes times as epoch seconds (UTC) and never
reads a clock, so the same events and the same tick times give the same scores
on any machine and on any replay.

* **Decayed frequency** F(t) = sum over accesses i of 2^-((t - t_i) / h), with
  h = ``half_life_s``. One access counts 1 now, 1/2 after one half-life. It is
  kept as (value, as-of time) and updated with each access in O(1); for a
  steady rate r (accesses per second) it settles at r * h / ln 2, so with the
  default h = 1 day a cube used once a day reads about 1.44.
* **Hotness** = F(now) + w * 2^-((now - last access) / h_r): the decayed
  frequency plus a recency bonus of at most w (``recency_weight``) that halves
  every ``recency_half_life_s``. The bonus breaks ties between equally frequent
  cubes in favour of the one used a minute ago, and lets a burst of fresh use
  count before it has piled up frequency.
* **Stability** in [0, 1] = the geometric mean of three terms, each saturating
  at 1: age / ``stable_age_s``, time since the last edit / ``stable_quiet_s``,
  distinct sessions / ``stable_sessions``. A geometric mean is 0 when any term
  is 0: a cube is stable only if it is old enough, unedited for a while *and*
  useful beyond one conversation (worth distilling into an adapter).
* **Vitality** (the decay rule of a cube's lifespan, its own half-life h_c):
  2^-((t - created) / h_c) + sum 2^-((t - t_i) / h_c). Creation counts as one
  use so that a new cube starts at 1; unused, it falls under a floor f after
  log2(1/f) half-lives, and every access pushes that further out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.settings import SchedulerPolicy


def decayed(value: float, at: float | None, now: float, half_life_s: float) -> float:
    """``value`` (as of ``at``) decayed to ``now``; a value from the future is not
    grown back (a tick may lag the newest event by a little)."""
    if at is None or now <= at:
        return value
    return value * 2.0 ** (-(now - at) / half_life_s)


def decay_add(
    value: float, at: float | None, when: float, half_life_s: float, weight: float = 1.0
) -> tuple[float, float]:
    """Adds one event of ``weight`` at ``when`` to (``value`` as of ``at``).

    Returns the new (value, as-of time). An event older than ``at`` (events of a
    cube arrive on different topics, so out of order) is decayed to ``at``
    instead, so the sum is the same in any order (up to float rounding).
    """
    if at is None:
        return weight, when
    if when >= at:
        return decayed(value, at, when, half_life_s) + weight, when
    return value + weight * 2.0 ** (-(at - when) / half_life_s), at


def hotness(
    freq: float,
    freq_at: float | None,
    last_access: float | None,
    now: float,
    policy: SchedulerPolicy,
) -> float:
    if last_access is None:
        return 0.0
    recency = decayed(policy.recency_weight, last_access, now, policy.recency_half_life_s)
    return decayed(freq, freq_at, now, policy.half_life_s) + recency


def stability(
    born: float | None,
    last_edit: float | None,
    sessions: int,
    now: float,
    policy: SchedulerPolicy,
) -> float:
    if born is None:
        return 0.0
    age = min(1.0, max(0.0, now - born) / policy.stable_age_s)
    quiet = min(1.0, max(0.0, now - (last_edit or born)) / policy.stable_quiet_s)
    used = min(1.0, sessions / policy.stable_sessions)
    return float((age * quiet * used) ** (1.0 / 3.0))


class Scorable(Protocol):
    """What the scores read; CubeUsage and the namespace's member summaries have it."""

    freq: float
    freq_at: float | None
    last_access: float | None
    vitality: float
    vitality_at: float | None
    decay_half_life_s: float | None

    @property
    def born(self) -> float | None: ...
    @property
    def last_edit(self) -> float | None: ...
    @property
    def session_count(self) -> int: ...


@dataclass(frozen=True)
class Scores:
    decayed_frequency: float
    hotness: float
    stability: float
    vitality: float | None  # only for cubes with a decay rule

    @classmethod
    def of(cls, item: Scorable, now: float, policy: SchedulerPolicy) -> Scores:
        vitality = None
        if item.decay_half_life_s is not None:
            vitality = decayed(item.vitality, item.vitality_at, now, item.decay_half_life_s)
        return cls(
            decayed_frequency=decayed(item.freq, item.freq_at, now, policy.half_life_s),
            hotness=hotness(item.freq, item.freq_at, item.last_access, now, policy),
            stability=stability(item.born, item.last_edit, item.session_count, now, policy),
            vitality=vitality,
        )

    def view(self) -> dict[str, Any]:
        """Rounded for people; the policies use the exact values."""
        return {
            "decayed_frequency": round(self.decayed_frequency, 4),
            "hotness": round(self.hotness, 4),
            "stability": round(self.stability, 4),
            "vitality": None if self.vitality is None else round(self.vitality, 4),
        }


def jaccard(
    a: set[str] | frozenset[str],
    b: set[str] | frozenset[str],
    weight: dict[str, float] | None = None,
) -> float:
    """Overlap of two cube sets (1 = same set): how far a hot set has moved.

    With ``weight`` (hotness), each cube counts by its weight: the share of the
    namespace's use that both sets serve. Plain Jaccard counts swapping the
    32nd and 33rd hottest cube (near-equal, and swapping back and forth with
    sampling noise) like losing the hottest one; weighted, such churn at the
    edge of the budget barely moves it, while a real shift of the workload does.
    """
    if not a and not b:
        return 1.0
    if weight is None:
        return len(a & b) / len(a | b)
    union = sum(weight.get(c, 0.0) for c in a | b)
    if union <= 0.0:
        return 1.0
    return sum(weight.get(c, 0.0) for c in a & b) / union
