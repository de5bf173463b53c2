"""Issue 4's must-show: 30 simulated days of a Zipf workload over 10,000 cubes.

Three namespaces of a tenant, all cubes created at T0 (64 tokens each):

* alpha (4,000 cubes) gets a Zipf(1.1) access workload, 150 searches an hour,
  for days 0-14; then the workload moves to beta (4,000 cubes) for days 15-29.
  Cube ``a0000`` is Zipf rank 1, ``a0001`` rank 2, and so on.
* gamma (2,000 cubes): g0000-g0199 have a TTL of 10 days, g0200-g0299 a decay
  rule (half-life 2 days) and are never used, g0300-g0399 have the same rule
  and are used once a day; the rest are plain.
* On day 20 a third of alpha's first adapter's sources (its tail) are edited.

The scheduler ticks every 3 hours. Fake inference/trainer confirm each command
with memory.promoted before the next tick. Every event and tick goes into a log;
replaying the log into a fresh scheduler gives exactly the same decisions.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.scheduler.decisions import Decision, Kind
from services.scheduler.engine import Scheduler
from services.scheduler.usage import Delivery
from shared.schemas.events import EventEnvelope
from shared.settings import SchedulerSettings
from tests.scheduler_fakes import (
    T0,
    FakeLifecycleVault,
    accessed,
    confirmations,
    created,
    updated,
)

pytestmark = pytest.mark.unit

DAYS = 30
TICK = timedelta(hours=3)
PER_HOUR = 150
ZIPF_S = 1.1
SHIFT_DAY = 15
EDIT_DAY = 20
N_ALPHA = N_BETA = 4_000
N_GAMMA = 2_000
# Big enough that a batch is every stable cube: the test can predict it exactly.
SETTINGS = SchedulerSettings(policy={"train_max_batch": 10_000})  # type: ignore[arg-type]

Log = list[tuple[str, Any]]  # ("events", [envelopes]) | ("tick", datetime)


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def zipf_weights(n: int) -> list[float]:
    return [1.0 / (rank**ZIPF_S) for rank in range(1, n + 1)]


def build_vault() -> FakeLifecycleVault:
    vault = FakeLifecycleVault()
    for cube in names("g", N_GAMMA):
        ttl = T0 + timedelta(days=10) if cube < "g0200" else None
        vault.add(cube, "gamma", ttl)
    return vault


def simulate() -> tuple[Log, list[Decision], Scheduler]:
    rng = random.Random(4)
    vault = build_vault()
    sched = Scheduler(SETTINGS, cubes={}, spaces={}, journal={}, vault=vault)
    log: Log = []
    decisions: list[Decision] = []
    pending: list[EventEnvelope] = []
    for cube in names("a", N_ALPHA):
        pending.append(created(cube, "alpha"))
    for cube in names("b", N_BETA):
        pending.append(created(cube, "beta"))
    for i, cube in enumerate(names("g", N_GAMMA)):
        ttl = 10 * 86400 if i < 200 else None
        decay = 2 * 86400 if 200 <= i < 400 else None
        pending.append(created(cube, "gamma", ttl_s=ttl, decay_s=decay))
    alpha, beta, weights = names("a", N_ALPHA), names("b", N_BETA), zipf_weights(N_ALPHA)
    first_adapter: list[str] = []
    now = T0
    end = T0 + timedelta(days=DAYS)
    n = 0
    while now < end:
        day = (now - T0).days
        for hour in range(3):
            at = now + timedelta(hours=hour)
            cubes, ns = (alpha, "alpha") if day < SHIFT_DAY else (beta, "beta")
            for j, cube in enumerate(rng.choices(cubes, weights, k=PER_HOUR)):
                # 20 conversations a day: a cube used on several days is used
                # across sessions; minutes spread the events through the hour.
                when = at + timedelta(seconds=j * 3600 // PER_HOUR)
                session = f"d{day}-s{rng.randrange(20)}"
                n += 1
                pending.append(accessed(cube, ns, when, session=session, n=n))
        if now.hour == 0:  # once a day: the used decay-rule cubes of gamma
            for cube in names("g", 400)[300:]:
                n += 1
                pending.append(accessed(cube, "gamma", now + timedelta(minutes=5), n=n))
        if day == EDIT_DAY and now.hour == 0 and first_adapter:
            for cube in first_adapter[-(len(first_adapter) // 3) :]:  # the tail, not the cache
                pending.append(updated(cube, "alpha", now + timedelta(minutes=1)))
        now += TICK
        # Events of the last 3 hours, then the tick at their end.
        log.append(("events", pending))
        sched.process([Delivery(e) for e in pending])
        log.append(("tick", now))
        result = sched.tick(now)
        decisions.extend(result.decisions)
        if not first_adapter:
            first_adapter = next((list(d.cube_ids) for d in decisions if d.kind == Kind.train), [])
        pending = confirmations(result.messages, now + timedelta(minutes=10))
        pending += vault.outbox
        vault.outbox = []
    return log, decisions, sched


def replay(log: Log) -> list[Decision]:
    sched = Scheduler(SETTINGS, cubes={}, spaces={}, journal={}, vault=build_vault())
    decisions: list[Decision] = []
    for kind, item in log:
        if kind == "events":
            sched.process([Delivery(e) for e in item])
        else:
            decisions.extend(sched.tick(item).decisions)
    return decisions


@pytest.fixture(scope="module")
def run() -> tuple[Log, list[Decision], Scheduler]:
    return simulate()


def of(decisions: list[Decision], kind: Kind, ns: str | None = None) -> list[Decision]:
    return [d for d in decisions if d.kind == kind and (ns is None or d.namespace == ns)]


def day_of(d: Decision) -> float:
    return (d.when - T0).total_seconds() / 86400


def sessions_before(log: Log, ns: str, until: datetime) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for kind, item in log:
        if kind != "events":
            continue
        for e in item:
            if e.topic == "memory.accessed" and e.namespace == ns and e.time <= until:
                seen[e.subject or ""].add(e.data["session_id"])
    return seen


def test_hot_set_becomes_a_kv_cache_and_moves_with_the_workload(run: Any) -> None:
    _, decisions, _ = run
    alpha = of(decisions, Kind.activate, "alpha")
    beta = of(decisions, Kind.activate, "beta")
    # One build per namespace: within a phase the hot set is stable (Jaccard with
    # the cache stays >= 0.7), so no rebuild churn.
    assert len(alpha) == 1 and len(beta) == 1
    assert day_of(alpha[0]) < 0.5  # the first ticks already see the head of the Zipf curve
    assert SHIFT_DAY <= day_of(beta[0]) < SHIFT_DAY + 0.5
    for build, prefix in ((alpha[0], "a"), (beta[0], "b")):
        ids = set(build.cube_ids)
        # Hotness >= 3 after 3 hours (450 searches): the ~20 head cubes, within
        # the budget of 2048 / 64 = 32 cubes.
        assert 16 <= len(ids) <= 2048 // 64
        assert set(names(prefix, 12)) <= ids  # the Zipf head is in it
        assert sum(int(c[1:]) >= 100 for c in ids) <= 1  # at most one lucky tail cube
        assert build.cube_ids[0] == f"{prefix}0000"  # hottest first
        assert build.numbers["min_hotness"] >= 3.0


def test_caches_go_cold_and_are_evicted_after_the_shift(run: Any) -> None:
    _, decisions, sched = run
    evictions = of(decisions, Kind.evict)
    assert [d.namespace for d in evictions] == ["alpha"]  # beta's cache is still hot at day 30
    evicted = evictions[0]
    assert evicted.reason.startswith("cold: mean hotness")
    assert evicted.numbers["mean_hotness"] < 0.5
    # Hotness halves every day once the workload is gone: a few days, not hours.
    assert SHIFT_DAY + 3 < day_of(evicted) < SHIFT_DAY + 12
    assert evicted.target_id is not None and evicted.target_id.startswith("kv-")
    assert list(sched.spaces["alpha"]["caches"]) == []
    assert len(sched.spaces["beta"]["caches"]) == 1


def test_stable_cubes_are_sent_to_the_trainer_in_batches(run: Any) -> None:
    log, decisions, _ = run
    trains = of(decisions, Kind.train)
    alpha = [d for d in trains if d.namespace == "alpha"]
    # Stability 0.9 with age the only unsaturated term: age >= 0.729 * 7 days.
    first = alpha[0]
    assert 5.1 <= day_of(first) < 5.1 + 0.125 + 1e-9
    # Exactly the alpha cubes used in >= 3 sessions by then (every one is old
    # enough and unedited), none less.
    stable = {c for c, s in sessions_before(log, "alpha", first.when).items() if len(s) >= 3}
    assert set(first.cube_ids) == stable and len(stable) >= 32
    # Batches are at least the cooldown apart and, while no adapter is retired,
    # never repeat a trained cube.
    times = [day_of(d) for d in alpha]
    assert all(b - a >= 3 for a, b in itertools.pairwise(times))
    retired = of(decisions, Kind.retire)[0]
    before = [d for d in alpha if d.at < retired.at]
    assert len(before) == 5  # days 5.1, 8.1, 11.1, 14.1, 17.1
    assert len({c for d in before for c in d.cube_ids}) == sum(len(d.cube_ids) for d in before)
    # Retiring the first adapter frees its unedited sources: retrained at once.
    edited = set(first.cube_ids[-(len(first.cube_ids) // 3) :])
    after = next(d for d in alpha if d.at >= retired.at)
    assert after.at == retired.at and set(first.cube_ids) - edited <= set(after.cube_ids)
    assert not edited & set(after.cube_ids)  # edited: not quiet for 3 days yet
    beta = [d for d in trains if d.namespace == "beta"]
    assert beta and SHIFT_DAY <= day_of(beta[0]) < SHIFT_DAY + 1
    assert not [d for d in trains if d.namespace == "gamma"]  # nothing used in 3 sessions


def test_edited_sources_retire_the_adapter(run: Any) -> None:
    _, decisions, sched = run
    retired = of(decisions, Kind.retire)
    assert len(retired) == 1
    first_train = of(decisions, Kind.train, "alpha")[0]
    assert set(retired[0].cube_ids) == set(first_train.cube_ids)
    assert EDIT_DAY <= day_of(retired[0]) < EDIT_DAY + 0.2
    assert retired[0].numbers["share"] >= 0.2
    assert retired[0].target_id not in sched.spaces["alpha"]["adapters"]


def test_ttl_and_decay_rules_expire_exactly_their_cubes(run: Any) -> None:
    _, decisions, sched = run
    ttl = of(decisions, Kind.expire_ttl)
    assert sorted(c for d in ttl for c in d.cube_ids) == names("g", 200)
    assert {d.when for d in ttl} == {T0 + timedelta(days=10)}  # the first tick at the TTL
    decay = of(decisions, Kind.expire_decay)
    assert sorted(c for d in decay for c in d.cube_ids) == names("g", 300)[200:]
    # 2^(-t/2d) < 0.25 once t > 4 days: the first tick after that.
    assert {d.when for d in decay} == {T0 + timedelta(days=4, hours=3)}
    assert "vitality" in decay[0].reason and decay[0].numbers["vitality"] < 0.25
    live = sched.spaces["gamma"]["members"]
    assert all(c in live for c in names("g", 400)[300:])  # used daily: alive
    assert sched.usage.usage("g0000").state == "expired"  # memory.expired came back


def test_replaying_the_log_gives_the_same_decisions(run: Any) -> None:
    log, decisions, _ = run
    assert len(decisions) > 300
    assert replay(log) == decisions


def test_explain_shows_counters_scores_and_decisions(run: Any) -> None:
    _, _, sched = run
    view = sched.explain("a0000", T0 + timedelta(days=DAYS))
    assert view is not None
    assert view["access_count"] > 1000 and view["namespace"] == "alpha"
    assert view["scores"]["hotness"] < 0.5  # cold since day 15
    assert view["scores"]["stability"] == 1.0
    kinds = [d["kind"] for d in view["decisions"]]
    assert kinds == ["activate", "train", "retire", "train", "evict"]
    assert all(d["reason"] for d in view["decisions"])
