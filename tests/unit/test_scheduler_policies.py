"""The scheduler's scores and each policy on small, hand-made histories."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.scheduler.decisions import Decision, Kind
from services.scheduler.engine import Scheduler
from services.scheduler.scores import decay_add, decayed, jaccard, stability
from services.scheduler.usage import Delivery
from shared.schemas.events import EventEnvelope
from shared.settings import SchedulerPolicy, SchedulerSettings, Settings
from tests.scheduler_fakes import (
    T0,
    FakeLifecycleVault,
    accessed,
    confirmations,
    created,
    deleted,
    updated,
)

pytestmark = pytest.mark.unit

DAY = timedelta(days=1)
SMALL = {"hot_min_cubes": 2, "train_min_batch": 2, "stable_age_s": 86_400, "stable_quiet_s": 86_400}


def make(vault: FakeLifecycleVault | None = None, **policy: Any) -> Scheduler:
    settings = SchedulerSettings(policy={**SMALL, **policy})  # type: ignore[arg-type]
    return Scheduler(settings, cubes={}, spaces={}, journal={}, vault=vault)


def feed(sched: Scheduler, *events: EventEnvelope) -> None:
    sched.process([Delivery(e) for e in events])


def uses(cube: str, ns: str, at: datetime, times: int, sessions: int = 1) -> list[EventEnvelope]:
    return [
        accessed(cube, ns, at + timedelta(seconds=i), session=f"s{i % sessions}", n=i)
        for i in range(times)
    ]


def kinds(decisions: list[Decision]) -> list[str]:
    return [str(d.kind) for d in decisions]


def test_decayed_frequency_halves_per_half_life_in_any_order() -> None:
    h = 100.0
    value, at = decay_add(0.0, None, 0.0, h)
    value, at = decay_add(value, at, 100.0, h)
    assert (value, at) == (1.5, 100.0)
    # The same two events the other way round give the same sum.
    other = decay_add(*decay_add(0.0, None, 100.0, h), 0.0, h)
    assert other == (1.5, 100.0)
    assert decayed(1.5, 100.0, 300.0, h) == pytest.approx(0.375)
    assert decayed(1.5, 100.0, 50.0, h) == 1.5  # never grown back


def test_stability_needs_age_quiet_and_sessions() -> None:
    p = SchedulerPolicy()
    week = 7 * 86400.0
    assert stability(0.0, 0.0, 3, week, p) == 1.0
    assert stability(0.0, week, 3, week, p) == 0.0  # just edited
    assert stability(0.0, 0.0, 0, week, p) == 0.0  # never used in a session
    assert stability(0.0, 0.0, 1, week, p) == pytest.approx((1 / 3) ** (1 / 3))


def test_weighted_jaccard_ignores_churn_at_the_cold_edge() -> None:
    weight = {"a": 100.0, "b": 50.0, "c": 1.0, "d": 1.0}
    assert jaccard({"a", "b", "c"}, {"a", "b", "d"}) == 0.5
    assert jaccard({"a", "b", "c"}, {"a", "b", "d"}, weight) == pytest.approx(150 / 152)


def test_activation_builds_once_and_not_again_while_pending() -> None:
    sched = make()
    feed(sched, *uses("c1", "ns", T0, 5), *uses("c2", "ns", T0, 4), *uses("c3", "ns", T0, 1))
    first = sched.tick(T0 + timedelta(minutes=5))
    assert kinds(first.decisions) == ["activate"]
    build = first.decisions[0]
    assert build.cube_ids == ("c1", "c2")  # c3 below hotness 3; hottest first
    assert "hot set of 2 cubes" in build.reason and build.numbers["min_hotness"] >= 3
    command = first.messages[0]
    assert (command.topic, command.key, command.event.id) == (
        "commands.activation.build",
        "ns",
        build.command_id,
    )
    assert command.event.data["token_budget"] == 2048
    # Pending: no second command.
    assert sched.tick(T0 + timedelta(minutes=30)).decisions == []
    # Unconfirmed past the timeout (30 min) and the cooldown (1 h): issued again.
    later = sched.tick(T0 + timedelta(hours=2))
    assert kinds(later.decisions) == ["timeout", "activate"]


def test_token_budget_bounds_the_hot_set() -> None:
    sched = make(token_budget=100)
    events = [created("big", "ns", tokens=90), created("small", "ns", tokens=10)]
    events += [created("mid", "ns", tokens=50)]
    feed(sched, *events, *uses("big", "ns", T0, 9), *uses("mid", "ns", T0, 8))
    feed(sched, *uses("small", "ns", T0, 4))
    (build,) = sched.tick(T0 + timedelta(minutes=5)).decisions
    assert build.cube_ids == ("big", "small")  # mid does not fit after big; small does
    assert build.numbers["tokens"] == 100


def test_confirmed_cache_is_evicted_when_cold_with_a_demoted_event() -> None:
    sched = make()
    feed(sched, *uses("c1", "ns", T0, 5), *uses("c2", "ns", T0, 5))
    built = sched.tick(T0 + timedelta(minutes=5))
    feed(sched, *confirmations(built.messages, T0 + timedelta(minutes=10)))
    assert list(sched.spaces["ns"]["caches"]) and not sched.spaces["ns"]["pending"]
    # Hotness 5 + bonus halves daily: under 0.5 after about 3.5 days.
    assert sched.tick(T0 + 3 * DAY).decisions == []
    result = sched.tick(T0 + 4 * DAY)
    (evict,) = result.decisions
    assert evict.kind == Kind.evict and evict.reason.startswith("cold: mean hotness 0.3")
    topics = [m.topic for m in result.messages]
    assert topics == ["commands.activation.evict", "memory.demoted"]
    demoted = result.messages[1].event.data
    assert (demoted["from_tier"], demoted["to_tier"]) == ("activation", "plaintext")
    assert demoted["command_id"] == evict.command_id
    assert sched.spaces["ns"]["caches"] == {}
    # Our own memory.demoted coming back changes nothing.
    feed(sched, result.messages[1].event)
    assert sched.tick(T0 + 5 * DAY).decisions == []


def test_edited_source_evicts_the_cache() -> None:
    sched = make()
    feed(sched, *uses("c1", "ns", T0, 5), *uses("c2", "ns", T0, 5))
    built = sched.tick(T0 + timedelta(minutes=5))
    feed(sched, *confirmations(built.messages, T0 + timedelta(minutes=10)))
    feed(sched, updated("c1", "ns", T0 + timedelta(hours=1)))
    decisions = sched.tick(T0 + timedelta(hours=2)).decisions
    assert kinds(decisions) == ["evict", "activate"]  # stale text out, a fresh cache built
    assert "1 of its 2 sources changed" in decisions[0].reason


def stable_namespace(sched: Scheduler, n: int = 4) -> None:
    for i in range(n):
        feed(sched, created(f"c{i}", "ns"), *uses(f"c{i}", "ns", T0, 3, sessions=3))


def test_training_batches_stable_cubes_with_cooldown() -> None:
    sched = make(hot_min_hotness=1000)  # training only
    stable_namespace(sched, 3)
    assert sched.tick(T0 + timedelta(hours=12)).decisions == []  # too young
    result = sched.tick(T0 + DAY)
    (train,) = result.decisions
    assert train.kind == Kind.train and train.cube_ids == ("c0", "c1", "c2")
    assert result.messages[0].topic == "commands.adapter.train"
    feed(sched, *confirmations(result.messages, T0 + DAY))
    assert sched.spaces["ns"]["adapters"] and not sched.spaces["ns"]["pending"]
    # Two more stable cubes, but the cooldown (3 days) holds them back.
    feed(sched, created("c8", "ns", T0 + DAY), *uses("c8", "ns", T0 + DAY, 3, sessions=3))
    feed(sched, created("c9", "ns", T0 + DAY), *uses("c9", "ns", T0 + DAY, 3, sessions=3))
    assert sched.tick(T0 + 3 * DAY).decisions == []
    (second,) = sched.tick(T0 + 4 * DAY).decisions
    assert second.cube_ids == ("c8", "c9")  # the trained ones are not sent again


def test_adapter_is_retired_when_its_sources_change() -> None:
    sched = make(hot_min_hotness=1000, retire_fraction=0.5)
    stable_namespace(sched, 4)
    result = sched.tick(T0 + DAY)
    feed(sched, *confirmations(result.messages, T0 + DAY))
    feed(sched, deleted("c0", "ns", T0 + 2 * DAY))
    assert sched.tick(T0 + 2 * DAY).decisions == []  # 1 of 4 < 50%
    feed(sched, updated("c1", "ns", T0 + 2 * DAY))
    result = sched.tick(T0 + 2 * DAY + timedelta(hours=1))
    (retire,) = result.decisions
    assert retire.kind == Kind.retire and "2 of its 4 sources" in retire.reason
    assert [m.topic for m in result.messages] == ["commands.adapter.retire", "memory.demoted"]
    assert sorted(result.messages[0].event.data["invalidated"]) == ["c0", "c1"]


def test_decay_rule_expires_through_the_vault_once() -> None:
    vault = FakeLifecycleVault()
    vault.add("d1", "ns")
    vault.add("d2", "ns")
    sched = make(vault, hot_min_hotness=1000, train_min_batch=100)
    feed(sched, created("d1", "ns", decay_s=86400), created("d2", "ns", decay_s=86400))
    feed(sched, accessed("d2", "ns", T0 + DAY))
    (expire,) = sched.tick(T0 + 2 * DAY + timedelta(seconds=1)).decisions
    assert expire.kind == Kind.expire_decay and expire.cube_ids == ("d1",)
    assert ("transition", "d1", "expired") in vault.calls
    # d2 was used a day later: 2^-t (1 + 2) < 0.25 once t > log2(12) = 3.58 days.
    assert sched.tick(T0 + 3.5 * DAY).decisions == []
    (later,) = sched.tick(T0 + 3.6 * DAY).decisions
    assert later.cube_ids == ("d2",)
    assert vault.calls.count(("transition", "d1", "expired")) == 1


def test_ttl_calls_expire_due_each_tick() -> None:
    vault = FakeLifecycleVault()
    vault.add("t1", "ns", T0 + DAY)
    sched = make(vault)
    feed(sched, created("t1", "ns", ttl_s=86400))
    assert sched.tick(T0).decisions == []
    (ttl,) = sched.tick(T0 + DAY).decisions
    assert ttl.kind == Kind.expire_ttl and "expires_at 2025-01-02" in ttl.reason
    feed(sched, *vault.outbox)
    assert sched.usage.usage("t1").state == "expired"  # type: ignore[union-attr]
    assert "t1" not in sched.spaces["ns"]["members"]


def test_near_duplicates_are_merged_on_creation() -> None:
    vault = FakeLifecycleVault()
    for cube in ("m1", "m2", "m3"):
        vault.add(cube, "ns")
    vault.duplicates["m2"] = [("m1", 0.97), ("m3", 0.5)]
    sched = make(vault)
    feed(sched, created("m1", "ns"), created("m3", "ns"))
    assert sched.tick(T0).decisions == []
    feed(sched, created("m2", "ns", T0 + timedelta(minutes=1)))
    (merge,) = sched.tick(T0 + timedelta(minutes=2)).decisions
    assert merge.kind == Kind.merge and merge.cube_ids == ("m2", "m1")
    assert merge.target_id == "merged-m2+m1" and "m1=0.970 >= 0.95" in merge.reason
    assert set(sched.spaces["ns"]["members"]) == {"m3"}
    # The vault's lifecycle updates of the originals do not bring them back.
    at = T0 + timedelta(minutes=2)
    feed(
        sched,
        updated("m1", "ns", at, changed=["lifecycle"]),
        updated("m2", "ns", at, 2, ["lifecycle"]),
    )
    assert set(sched.spaces["ns"]["members"]) == {"m3"}
    assert sched.usage.usage("m1").state == "merged"  # type: ignore[union-attr]
    assert sched.tick(T0 + timedelta(minutes=3)).decisions == []  # checked once


def test_near_duplicate_checks_are_bounded_per_tick() -> None:
    """A bulk ingest is checked over several ticks, oldest first, each cube once."""
    vault = FakeLifecycleVault()
    cubes = [f"b{i}" for i in range(7)]
    for cube in cubes:
        vault.add(cube, "ns")
    vault.duplicates["b5"] = [("b0", 0.99)]
    sched = make(vault, merge_checks_per_tick=3)
    feed(sched, *(created(c, "ns") for c in cubes))
    checked = lambda: [c[1] for c in vault.calls if c[0] == "near_duplicates"]  # noqa: E731
    assert sched.tick(T0).decisions == []
    assert checked() == ["b0", "b1", "b2"]
    (merge,) = sched.tick(T0 + timedelta(minutes=1)).decisions
    assert merge.cube_ids == ("b5", "b0")
    assert checked() == cubes[:6]
    assert sched.tick(T0 + timedelta(minutes=2)).decisions == []
    assert sched.tick(T0 + timedelta(minutes=3)).decisions == []
    assert checked() == cubes  # each once


def test_per_namespace_overrides() -> None:
    settings = Settings(scheduler={"namespaces": {"eager": {"hot_min_cubes": 1}}})  # type: ignore[arg-type]
    sched = Scheduler(settings.scheduler, cubes={}, spaces={}, journal={})
    feed(sched, *uses("c1", "eager", T0, 5), *uses("c2", "lazy", T0, 5))
    decisions = sched.tick(T0 + timedelta(minutes=1)).decisions
    assert [(d.kind, d.namespace) for d in decisions] == [(Kind.activate, "eager")]


def test_explain_lists_scores_and_reasons() -> None:
    sched = make()
    feed(sched, created("c1", "ns"), *uses("c1", "ns", T0, 5, sessions=2))
    feed(sched, *uses("c2", "ns", T0, 5))
    sched.tick(T0 + timedelta(minutes=1))
    view = sched.explain("c1", T0 + timedelta(minutes=1))
    assert view is not None
    assert view["access_count"] == 5 and view["distinct_sessions"] == 2
    assert view["scores"]["hotness"] > 5 and view["scores"]["decayed_frequency"] > 4.9
    (decision,) = view["decisions"]
    assert decision["kind"] == "activate" and decision["reason"].startswith("hot set")
    assert decision["at"] == "2025-01-01T00:01:00+00:00"
    assert sched.explain("c1", T0, tenant="other") is None
    assert sched.explain("nope", T0) is None
