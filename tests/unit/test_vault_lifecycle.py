"""The vault's lifecycle operations (services/vault/lifecycle_ops.py) in process:
expiry exactly once, transitions, merges, near-duplicates, tenant isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from services.vault.service import Vault
from shared.adapters import create_event_bus
from shared.errors import Conflict, IllegalTransition, MemgridError, NotFound, ValidationFailed
from shared.ports.bus import EventBus
from shared.ports.graph import CubeWrite, WriteBatch
from shared.schemas.api import Caller, CubeDraft, MemoryPatch, NamespaceCreate
from shared.schemas.memcube import EdgeKind, Governance, LifecycleState, MemCube
from shared.settings import Settings
from tests.unit.test_vault import Clock, Recorder, make_vault, search

pytestmark = pytest.mark.unit

S = LifecycleState
TOPICS = ["memory.created", "memory.updated", "memory.deleted", "memory.expired"]


@dataclass
class Env:
    vault: Vault
    bus: EventBus
    clock: Clock
    caller: Caller
    ns: str
    rec: Recorder

    def add(self, text: str, **kw: object) -> MemCube:
        [cube] = self.vault.create_memories(self.caller, self.ns, [CubeDraft(text=text, **kw)])  # type: ignore[arg-type]
        return cube

    def events(self, topic: str) -> list[dict[str, object]]:
        self.vault.relay.drain()
        self.bus.flush()
        return [e.data for e in self.rec.events if e.topic == topic]

    def state(self, cube_id: str) -> LifecycleState:
        return self.vault.get_memory(self.caller, cube_id).lifecycle.state


def new_tenant(vault: Vault, name: str) -> tuple[Caller, str]:
    t = vault.create_tenant(name)
    key = vault.find_api_key(t.api_key.split("_")[1])
    assert key is not None
    caller = Caller(tenant=t.id, principal=key.principal)
    return caller, vault.create_namespace(caller, NamespaceCreate(name="team")).id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    bus = create_event_bus(Settings().bus)
    clock = Clock()
    vault = make_vault(tmp_path, bus, clock)
    vault.start()
    rec = Recorder(bus, TOPICS)
    caller, ns = new_tenant(vault, "acme")
    yield Env(vault, bus, clock, caller, ns, rec)
    vault.close()
    bus.close()


# --- expiry ----------------------------------------------------------------------------


def test_expire_due_expires_once_and_keeps_history(env: Env) -> None:
    short = env.add("the door code is 4711", ttl_seconds=60)
    keep = env.add("the office is on the third floor", ttl_seconds=3600)
    forever = env.add("the wifi is called memgrid")
    assert env.vault.expire_due(env.clock.now) == []
    env.clock.now += timedelta(seconds=60)  # exactly at expiry: due
    assert env.vault.expire_due(env.clock.now) == [short.id]
    assert env.vault.expire_due(env.clock.now) == []  # nothing left to do
    cube = env.vault.get_memory(env.caller, short.id)
    assert (cube.version, cube.lifecycle.state, cube.lifecycle.reason) == (2, S.expired, "ttl")
    assert cube.lifecycle.changed_at == env.clock.now
    assert [c.lifecycle.state for c in env.vault.history(env.caller, short.id)] == [
        S.generated,
        S.expired,
    ]
    assert short.text not in search(env.vault, env.caller, env.ns, "door code")
    [expired] = env.events("memory.expired")
    assert expired == {
        "cube_id": short.id,
        "version": 2,
        "reason": "ttl",
        "previous_state": "generated",
    }
    assert {env.state(keep.id), env.state(forever.id)} == {S.generated}


def test_concurrent_expiry_runs_publish_once(env: Env) -> None:
    cubes = [env.add(f"short lived note {i}", ttl_seconds=10) for i in range(30)]
    env.clock.now += timedelta(minutes=1)
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(env.vault.expire_due(env.clock.now))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [i for r in results for i in r]
    assert sorted(done) == sorted(c.id for c in cubes)  # each expired by exactly one run
    published = [e["cube_id"] for e in env.events("memory.expired")]
    assert sorted(published) == sorted(c.id for c in cubes)


def test_a_race_with_an_edit_skips_only_that_cube(env: Env) -> None:
    a = env.add("alpha note", ttl_seconds=10)
    b = env.add("beta note", ttl_seconds=10)
    env.clock.now += timedelta(minutes=1)
    store = env.vault._store
    due = store.due_for_expiry(env.clock.now)
    env.vault.update_memory(env.caller, a.id, MemoryPatch(tags=["edited"]))  # a moves on
    original = store.due_for_expiry
    store.due_for_expiry = lambda now, limit=1000: due  # type: ignore[method-assign]
    try:
        assert env.vault.expire_due(env.clock.now) == [b.id]
    finally:
        store.due_for_expiry = original  # type: ignore[method-assign]
    assert env.vault.expire_due(env.clock.now) == [a.id]  # the next run gets it
    assert [e["cube_id"] for e in env.events("memory.expired")] == [b.id, a.id]


def hold(env: Env, cube: MemCube, **governance: object) -> None:
    """Puts a hold on the cube by writing a new version (no API sets holds yet)."""
    gov = cube.governance.model_copy(update=governance)
    new = cube.model_copy(update={"version": cube.version + 1, "governance": gov})
    vec = env.vault._store.get_embedding(cube.tenant, cube.id)
    env.vault._store.write(
        WriteBatch(cubes=[CubeWrite(new, vec)], superseded=[(cube.id, cube.version)])
    )


def test_held_cubes_do_not_expire(env: Env) -> None:
    held = env.add("under legal hold", ttl_seconds=10)
    kept = env.add("retained for audit", ttl_seconds=10)
    free = [env.add(f"free note {i}", ttl_seconds=10) for i in range(3)]
    hold(env, held, legal_hold=True)
    hold(env, kept, retention_until=env.clock.now + timedelta(days=30))
    env.clock.now += timedelta(minutes=1)
    # limit=1: held cubes come first in expiry order but must not starve the rest
    got = [i for _ in range(3) for i in env.vault.expire_due(env.clock.now, limit=1)]
    assert got == [c.id for c in free]
    assert env.vault.expire_due(env.clock.now) == []
    assert {env.state(held.id), env.state(kept.id)} == {S.generated}
    env.clock.now += timedelta(days=31)  # the retention date passes; the hold stays
    assert env.vault.expire_due(env.clock.now) == [kept.id]


def test_expire_due_checks_its_input(env: Env) -> None:
    with pytest.raises(ValidationFailed) as info:
        env.vault.expire_due(env.clock.now.replace(tzinfo=None))
    assert info.value.errors[0].field == "body.now"
    for bad in (0, 10_001):
        with pytest.raises(ValidationFailed):
            env.vault.expire_due(env.clock.now, limit=bad)


# --- transitions -----------------------------------------------------------------------


def test_transitions_follow_the_table_and_publish(env: Env) -> None:
    cube = env.add("Ana prefers tea")
    hot = env.vault.transition(env.caller.tenant, cube.id, S.activated, "hot: KV cache built")
    assert (hot.version, hot.lifecycle.state, hot.lifecycle.reason) == (
        2,
        S.activated,
        "hot: KV cache built",
    )
    assert search(env.vault, env.caller, env.ns, "tea") == [cube.text]  # still found
    back = env.vault.transition(env.caller.tenant, cube.id, S.generated, "cache evicted")
    assert back.lifecycle.state == S.generated
    assert search(env.vault, env.caller, env.ns, "tea") == [cube.text]
    env.vault.transition(env.caller.tenant, cube.id, S.archived, "cold for 90 days")
    assert search(env.vault, env.caller, env.ns, "tea") == []
    with pytest.raises(IllegalTransition) as info:
        env.vault.transition(env.caller.tenant, cube.id, S.activated, "warm again")
    assert (info.value.status, info.value.code) == (409, "illegal_transition")
    assert (info.value.from_state, info.value.to_state) == ("archived", "activated")
    env.vault.transition(env.caller.tenant, cube.id, S.expired, "retention rule")
    updated = env.events("memory.updated")
    assert [u["changed"] for u in updated] == [["lifecycle"]] * 3
    assert [u["version"] for u in updated] == [2, 3, 4]
    [expired] = env.events("memory.expired")
    assert (expired["reason"], expired["previous_state"]) == ("retention rule", "archived")
    edges = env.vault.lineage(env.caller, cube.id).edges
    assert [e.reason for e in edges if e.kind == EdgeKind.VERSION_OF] == [
        "hot: KV cache built",
        "cache evicted",
        "cold for 90 days",
        "retention rule",
    ]
    env.vault.transition(env.caller.tenant, cube.id, S.deleted, "erasure request")
    [deleted] = env.events("memory.deleted")
    assert deleted["reason"] == "erasure request"
    with pytest.raises(NotFound):
        env.vault.get_memory(env.caller, cube.id)


def test_transition_is_tenant_scoped_and_validated(env: Env) -> None:
    cube = env.add("secret plans")
    other, _ = new_tenant(env.vault, "other")
    with pytest.raises(NotFound) as info:
        env.vault.transition(other.tenant, cube.id, S.archived, "mine now")
    assert info.value.code == "memory_not_found"
    with pytest.raises(NotFound):
        env.vault.transition(env.caller.tenant, "no-such-id", S.archived, "x")
    with pytest.raises(ValidationFailed) as bad:
        env.vault.transition(env.caller.tenant, cube.id, S.archived, "  ")
    assert bad.value.errors[0].field == "body.reason"
    with pytest.raises(ValidationFailed) as bad:
        env.vault.transition(env.caller.tenant, cube.id, S.merged, "use merge")
    assert bad.value.errors[0].field == "body.to"
    with pytest.raises(ValidationFailed):
        env.vault.transition(env.caller.tenant, cube.id, "melted", "x")  # type: ignore[arg-type]
    assert env.state(cube.id) == S.generated


# --- near-duplicates and merge ----------------------------------------------------------


def test_near_duplicates_then_merge(env: Env) -> None:
    a = env.add("Ana moved to Lisbon in March", tags=["home"], sources=["m1"])
    env.clock.now += timedelta(hours=1)
    b = env.add("Ana moved to Lisbon in March 2024", tags=["move"], sources=["m2"])
    other = env.add("Bob plays the violin every morning")
    dups = env.vault.near_duplicates(env.caller.tenant, a.id, threshold=0.8)
    assert [d for d, _ in dups] == [b.id]
    assert 0.8 <= dups[0][1] <= 1.0 + 1e-6
    assert env.vault.near_duplicates(env.caller.tenant, a.id, threshold=0.999) == []
    stranger, _ = new_tenant(env.vault, "stranger")
    with pytest.raises(NotFound):
        env.vault.near_duplicates(stranger.tenant, a.id, threshold=0.5)

    env.clock.now += timedelta(hours=1)
    merged = env.vault.merge(env.caller.tenant, [a.id, b.id], "near-duplicate (cosine 0.9)")
    assert merged.text == b.text  # the most recent of the two
    assert (merged.tags, merged.sources) == (["home", "move"], ["m1", "m2"])
    assert merged.metadata["merged_from"] == [a.ref, b.ref]
    assert merged.lifecycle.state == S.generated and merged.namespace == env.ns
    found = search(env.vault, env.caller, env.ns, "Ana Lisbon March")
    assert found.count(b.text) == 1 and a.text not in found
    assert {env.state(a.id), env.state(b.id)} == {S.merged}
    assert env.vault.near_duplicates(env.caller.tenant, a.id, threshold=0.5) == []
    assert [d for d, _ in env.vault.near_duplicates(env.caller.tenant, other.id, -1.0)] == [
        merged.id
    ]
    into = [e for e in env.vault.lineage(env.caller, merged.id).edges]
    assert {(e.kind, e.src, e.dst) for e in into} == {
        (EdgeKind.MERGED_INTO, a.ref, merged.ref),
        (EdgeKind.MERGED_INTO, b.ref, merged.ref),
    }
    created = [e for e in env.events("memory.created") if e["cube_id"] == merged.id]
    assert len(created) == 1 and created[0]["principal"] == "system:lifecycle"
    updated = env.events("memory.updated")
    assert sorted(u["cube_id"] for u in updated) == sorted([a.id, b.id])
    # Merging the retired originals again is refused, and nothing is written.
    with pytest.raises(IllegalTransition):
        env.vault.merge(env.caller.tenant, [a.id, other.id], "again")
    assert env.state(other.id) == S.generated


def test_merge_refuses_bad_input_and_writes_nothing(env: Env) -> None:
    a, b = env.add("note one"), env.add("note one again")
    second_ns = env.vault.create_namespace(env.caller, NamespaceCreate(name="elsewhere")).id
    [far] = env.vault.create_memories(env.caller, second_ns, [CubeDraft(text="note one")])
    short = env.add("note one short-lived", ttl_seconds=5)
    other, _ = new_tenant(env.vault, "other")

    def refused(ids: list[str], reason: str = "dup") -> MemgridError:
        with pytest.raises(MemgridError) as info:
            env.vault.merge(env.caller.tenant, ids, reason)
        return info.value

    assert refused([a.id]).errors[0].field == "body.cube_ids"
    assert refused([a.id, a.id]).errors[0].field == "body.cube_ids"
    assert refused([a.id, b.id], " ").errors[0].field == "body.reason"
    assert "namespace" in refused([a.id, far.id]).detail
    missing = refused([a.id, "nope"])
    assert (missing.status, missing.code) == (404, "memory_not_found") and "nope" in missing.detail
    with pytest.raises(NotFound):
        env.vault.merge(other.tenant, [a.id, b.id], "not yours")
    env.clock.now += timedelta(seconds=10)
    expired = refused([a.id, short.id])
    assert (expired.status, expired.code) == (409, "memory_expired")
    assert all(env.state(c.id) == S.generated for c in (a, b))
    assert len(env.vault.history(env.caller, a.id)) == 1


def test_merge_keeps_the_strictest_governance(env: Env) -> None:
    a = env.add("budget is 10k", ttl_seconds=100)
    b = env.add("budget is 10k euros", ttl_seconds=1000)
    hold(env, a, legal_hold=True, access_scope="private", sensitivity_tags=["finance"])
    merged = env.vault.merge(env.caller.tenant, [a.id, b.id], "dup")
    gov: Governance = merged.governance
    assert gov.legal_hold and gov.access_scope == "private" and gov.sensitivity_tags == ["finance"]
    assert gov.lifespan.expires_at == env.clock.now + timedelta(seconds=1000)


def test_a_concurrent_change_fails_the_whole_merge(env: Env) -> None:
    a, b = env.add("same thing"), env.add("same thing!")
    store = env.vault._store
    stale = store.get_current(env.caller.tenant, [a.id, b.id])
    env.vault.update_memory(env.caller, b.id, MemoryPatch(tags=["x"]))
    original = store.get_current
    store.get_current = lambda tenant, ids: stale  # type: ignore[method-assign]
    try:
        with pytest.raises(Conflict):
            env.vault.merge(env.caller.tenant, [a.id, b.id], "dup")
    finally:
        store.get_current = original  # type: ignore[method-assign]
    assert env.state(a.id) == S.generated and len(env.vault.history(env.caller, a.id)) == 1
    assert len(search(env.vault, env.caller, env.ns, "same thing")) == 2


def test_near_duplicates_checks_its_input(env: Env) -> None:
    a = env.add("x")
    for threshold in (float("nan"), 1.5, -2.0):
        with pytest.raises(ValidationFailed) as info:
            env.vault.near_duplicates(env.caller.tenant, a.id, threshold)
        assert info.value.errors[0].field == "query.threshold"
    with pytest.raises(ValidationFailed):
        env.vault.near_duplicates(env.caller.tenant, a.id, 0.5, limit=0)
