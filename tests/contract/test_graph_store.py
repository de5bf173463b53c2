"""GraphStore contract: every adapter (SQLite today, Neo4j later) passes this suite.

See shared/ports/graph.py for the contract itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from services.vault.stores import create_graph_store
from shared.errors import Conflict, Unavailable
from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.api import NamespaceRecord, SearchFilters
from shared.schemas.memcube import Edge, EdgeKind, LifecycleState, MemCube, Origin, SemanticType
from shared.settings import GraphSettings
from tests.contract.adapters import AdapterCase, new_id, params
from tests.contract.graph_support import (
    DIM,
    T0,
    created_event,
    make_cube,
    new_version,
    setup_tenant,
    unit,
    write_cubes,
)

pytestmark = pytest.mark.contract

# The password infra/local gives the local server (it honours the same variable).
NEO4J_PASSWORD = os.environ.get("MGINFRA_NEO4J_PASSWORD", "memgrid-dev-password")

GRAPH_STORES: list[AdapterCase[GraphStore]] = [
    AdapterCase(
        "sqlite",
        lambda tmp: create_graph_store(GraphSettings(url=f"sqlite:///{tmp}/graph.db"), DIM),
    ),
    AdapterCase(
        "neo4j",
        lambda tmp: create_graph_store(
            GraphSettings(url="bolt://127.0.0.1:7687", password=NEO4J_PASSWORD), DIM
        ),
        requires=("127.0.0.1", 7687),
    ),
]


@dataclass
class World:
    store: GraphStore
    a: str  # tenant A with namespaces a1, a2
    a1: str
    a2: str
    b: str  # tenant B with namespace b1
    b1: str
    rng: np.random.Generator


@pytest.fixture(params=params(GRAPH_STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    case: AdapterCase[GraphStore] = request.param
    s = case.build(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def w(store: GraphStore) -> World:
    a, b = new_id("ta"), new_id("tb")
    a1, a2, b1 = new_id("ns"), new_id("ns"), new_id("ns")
    setup_tenant(store, a, a1, a2)
    setup_tenant(store, b, b1)
    return World(store, a, a1, a2, b, b1, np.random.default_rng(7))


def ids(hits: list) -> list[str]:
    return [h.cube_id for h in hits]


# --- tenants, namespaces, keys ---------------------------------------------------


def test_tenant_and_key_records(w: World) -> None:
    t = w.store.get_tenant(w.a)
    assert t is not None and t.id == w.a
    key = w.store.find_api_key(f"key-{w.a}")
    assert key is not None and key.tenant == w.a
    assert w.store.get_tenant(new_id("nobody")) is None
    assert w.store.find_api_key("no-such-prefix") is None


def test_namespaces_are_unique_per_tenant_and_isolated(w: World) -> None:
    names = {ns.id for ns in w.store.list_namespaces(w.a)}
    assert names == {w.a1, w.a2}
    assert [ns.id for ns in w.store.list_namespaces(w.b)] == [w.b1]
    with pytest.raises(Conflict):
        w.store.create_namespace(
            NamespaceRecord(id=new_id("ns"), tenant=w.a, name=w.a1, created_at=T0)
        )
    # The same name is fine in another tenant.
    other = new_id("ns")
    w.store.create_namespace(NamespaceRecord(id=other, tenant=w.b, name=w.a1, created_at=T0))
    assert w.store.get_namespace(w.b, other) is not None
    assert w.store.get_namespace(w.a, other) is None
    assert w.store.get_namespace(w.b, w.a1) is None


# --- cubes, versions, isolation --------------------------------------------------


def test_write_and_read_back(w: World) -> None:
    cubes = [make_cube(w.a, w.a1, f"memory {i}", tags=["x"]) for i in range(3)]
    write_cubes(w.store, cubes, unit(w.rng, 3))
    got = w.store.get_cube(w.a, cubes[1].id)
    assert got == cubes[1]
    order = [cubes[2].id, "missing", cubes[0].id]
    assert [c.id for c in w.store.get_current(w.a, order)] == [cubes[2].id, cubes[0].id]
    assert w.store.get_cube(w.a, "missing") is None


def test_other_tenant_sees_nothing(w: World) -> None:
    secret = make_cube(w.a, w.a1, "the launch code is swordfish")
    vec = unit(w.rng)
    write_cubes(w.store, [secret], [vec])
    w.store.write(
        WriteBatch(edges=[Edge(kind=EdgeKind.DERIVED_FROM, src=secret.ref, dst=secret.ref)])
    )
    b = w.store
    assert b.get_cube(w.b, secret.id) is None
    assert b.get_cube(w.b, secret.id, version=1) is None
    assert b.get_current(w.b, [secret.id]) == []
    assert b.history(w.b, secret.id) == []
    assert b.edges(w.b, secret.id) == []
    # Even naming tenant A's namespace, tenant B finds nothing.
    for nss in ([w.a1], [w.b1, w.a1]):
        assert b.vector_search(w.b, nss, vec, 10) == []
        assert b.text_search(w.b, nss, "swordfish launch", 10) == []
    assert ids(b.vector_search(w.a, [w.a1], vec, 10)) == [secret.id]
    assert ids(b.text_search(w.a, [w.a1], "swordfish", 10)) == [secret.id]


def test_only_the_current_version_is_searchable(w: World) -> None:
    v1 = make_cube(w.a, w.a1, "the cat sat on the mat")
    vec1, vec2 = unit(w.rng), unit(w.rng)
    write_cubes(w.store, [v1], [vec1])
    assert ids(w.store.vector_search(w.a, [w.a1], vec1, 5)) == [v1.id]  # cache now loaded
    v2 = new_version(v1, text="a dog barked at the moon")
    w.store.write(
        WriteBatch(
            cubes=[CubeWrite(cube=v2, embedding=vec2)],
            superseded=[(v1.id, 1)],
            edges=[Edge(kind=EdgeKind.VERSION_OF, src=v2.ref, dst=v1.ref)],
        )
    )
    cur = w.store.get_cube(w.a, v1.id)
    assert cur is not None and cur.version == 2
    old = w.store.get_cube(w.a, v1.id, version=1)
    assert old is not None and old.text == "the cat sat on the mat"
    assert [c.version for c in w.store.history(w.a, v1.id)] == [1, 2]
    assert [c.version for c in w.store.get_current(w.a, [v1.id])] == [2]
    assert w.store.text_search(w.a, [w.a1], "cat mat", 5) == []
    assert ids(w.store.text_search(w.a, [w.a1], "dog moon", 5)) == [v1.id]
    hits = w.store.vector_search(w.a, [w.a1], vec2, 5)
    assert ids(hits) == [v1.id]  # one hit per cube, never the old version too
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_edges_by_cube_and_by_version(w: World) -> None:
    v1 = make_cube(w.a, w.a1, "one")
    write_cubes(w.store, [v1])
    v2 = new_version(v1, text="two")
    v3 = new_version(v2, text="three")
    for old, new in ((v1, v2), (v2, v3)):
        w.store.write(
            WriteBatch(
                cubes=[CubeWrite(cube=new)],
                superseded=[(old.id, old.version)],
                edges=[Edge(kind=EdgeKind.VERSION_OF, src=new.ref, dst=old.ref, reason="upd")],
            )
        )
    all_edges = w.store.edges(w.a, v1.id)
    assert {(e.src, e.dst) for e in all_edges} == {(v2.ref, v1.ref), (v3.ref, v2.ref)}
    assert all(e.kind == EdgeKind.VERSION_OF and e.reason == "upd" for e in all_edges)
    assert [(e.src, e.dst) for e in w.store.edges(w.a, v3.ref)] == [(v3.ref, v2.ref)]
    assert w.store.edges(w.a, v1.ref) == [e for e in all_edges if e.dst == v1.ref]


def test_get_embedding(w: World) -> None:
    with_vec, without = make_cube(w.a, w.a1, "with"), make_cube(w.a, w.a1, "without")
    vec = unit(w.rng)
    write_cubes(w.store, [with_vec, without], [vec * 3.0, None])  # stored normalised
    got = w.store.get_embedding(w.a, with_vec.id)
    assert got is not None and got.dtype == np.float32
    assert np.allclose(got, vec, atol=1e-6)
    assert w.store.get_embedding(w.a, without.id) is None
    assert w.store.get_embedding(w.a, "missing") is None
    assert w.store.get_embedding(w.b, with_vec.id) is None  # another tenant's cube
    assert w.store.get_embedding(w.b, with_vec.id, version=1) is None
    # A retired version keeps its vector; the current one has none here.
    v2 = new_version(with_vec, state=LifecycleState.expired)
    w.store.write(WriteBatch(cubes=[CubeWrite(cube=v2)], superseded=[(with_vec.id, 1)]))
    assert w.store.get_embedding(w.a, with_vec.id) is None
    old = w.store.get_embedding(w.a, with_vec.id, version=1)
    assert old is not None and np.allclose(old, vec, atol=1e-6)
    assert w.store.get_embedding(w.a, with_vec.id, version=9) is None


def merge_batch(originals: list[MemCube], merged: MemCube, vec: np.ndarray) -> WriteBatch:
    retired = [new_version(o, state=LifecycleState.merged) for o in originals]
    return WriteBatch(
        cubes=[CubeWrite(cube=merged, embedding=vec), *(CubeWrite(cube=r) for r in retired)],
        superseded=[(o.id, o.version) for o in originals],
        edges=[
            *(
                Edge(kind=EdgeKind.VERSION_OF, src=r.ref, dst=o.ref)
                for o, r in zip(originals, retired, strict=True)
            ),
            *(Edge(kind=EdgeKind.MERGED_INTO, src=o.ref, dst=merged.ref) for o in originals),
        ],
        events=[created_event(merged)],
    )


def test_a_merge_is_one_batch(w: World) -> None:
    """The vault's merge: the originals retired (state merged) and linked
    MERGED_INTO the new cube, all in one write; a stale original fails it all."""
    vecs = unit(w.rng, 3)
    a = make_cube(w.a, w.a1, "Ana lives in Lisbon")
    b = make_cube(w.a, w.a1, "Ana lives in Lisbon, Portugal")
    write_cubes(w.store, [a, b], vecs[:2])
    merged = make_cube(w.a, w.a1, b.text or "")
    w.store.write(merge_batch([a, b], merged, vecs[2]))
    # A second merge of the same (now stale) versions fails as a whole.
    again = make_cube(w.a, w.a1, b.text or "")
    with pytest.raises(Conflict):
        w.store.write(merge_batch([a, b], again, vecs[2]))
    assert w.store.get_cube(w.a, again.id) is None
    assert w.store.edges(w.a, again.id) == []
    subjects = {i.event.subject for i in w.store.outbox_pending(limit=100_000)}
    assert merged.id in subjects and again.id not in subjects
    assert ids(w.store.text_search(w.a, [w.a1], "Lisbon", 10)) == [merged.id]
    assert ids(w.store.vector_search(w.a, [w.a1], vecs[0], 10)) == [merged.id]
    into = [e for e in w.store.edges(w.a, merged.id) if e.kind == EdgeKind.MERGED_INTO]
    assert {(e.src, e.dst) for e in into} == {(a.ref, merged.ref), (b.ref, merged.ref)}
    for o in (a, b):
        cur = w.store.get_cube(w.a, o.id)
        assert cur is not None and cur.lifecycle.state == LifecycleState.merged
        assert [c.version for c in w.store.history(w.a, o.id)] == [1, 2]


@pytest.mark.parametrize(
    "state",
    [
        LifecycleState.deleted,
        LifecycleState.expired,
        LifecycleState.archived,
        LifecycleState.merged,
    ],
)
def test_unsearchable_states_leave_the_indexes(w: World, state: LifecycleState) -> None:
    v1 = make_cube(w.a, w.a1, "remember the alamo", expires_at=T0)
    keep = make_cube(w.a, w.a1, "remember the milk")
    vec = unit(w.rng)
    write_cubes(w.store, [v1, keep], [vec, unit(w.rng)])
    assert v1.id in ids(w.store.vector_search(w.a, [w.a1], vec, 5))
    tomb = new_version(v1, state=state)
    w.store.write(WriteBatch(cubes=[CubeWrite(cube=tomb)], superseded=[(v1.id, 1)]))
    assert v1.id not in ids(w.store.vector_search(w.a, [w.a1], vec, 5))
    assert ids(w.store.text_search(w.a, [w.a1], "remember alamo", 5)) == [keep.id]
    got = w.store.get_cube(w.a, v1.id)
    assert got is not None and got.lifecycle.state == state  # tombstones are readable
    assert len(w.store.history(w.a, v1.id)) == 2
    assert v1.id not in {c.id for c in w.store.due_for_expiry(T0 + timedelta(days=1))}


def test_a_failed_batch_writes_nothing(w: World) -> None:
    existing = make_cube(w.a, w.a1, "already here")
    write_cubes(w.store, [existing], [unit(w.rng)])

    def ours() -> int:
        return sum(p.event.tenant == w.a for p in w.store.outbox_pending(100_000))

    pending_before = ours()
    w.store.vector_search(w.a, [w.a1], unit(w.rng), 5)  # load any cache first
    fresh = make_cube(w.a, w.a1, "zebra crossing")
    vec = unit(w.rng)
    with pytest.raises(Conflict):
        w.store.write(
            WriteBatch(
                cubes=[CubeWrite(cube=fresh, embedding=vec), CubeWrite(cube=existing)],
                events=[created_event(fresh), created_event(existing)],
            )
        )
    assert w.store.get_cube(w.a, fresh.id) is None
    assert w.store.history(w.a, fresh.id) == []
    assert ours() == pending_before
    assert fresh.id not in ids(w.store.vector_search(w.a, [w.a1], vec, 5))
    assert w.store.text_search(w.a, [w.a1], "zebra", 5) == []
    # The store is still usable afterwards.
    write_cubes(w.store, [fresh], [vec])
    assert ids(w.store.vector_search(w.a, [w.a1], vec, 1)) == [fresh.id]


def test_a_stale_version_is_a_conflict(w: World) -> None:
    v1 = make_cube(w.a, w.a1, "base")
    write_cubes(w.store, [v1])
    v2 = new_version(v1, text="first writer")
    w.store.write(WriteBatch(cubes=[CubeWrite(cube=v2)], superseded=[(v1.id, 1)]))
    rival = new_version(v1, text="second writer")  # also version 2
    with pytest.raises(Conflict):
        w.store.write(WriteBatch(cubes=[CubeWrite(cube=rival)], superseded=[(v1.id, 1)]))
    cur = w.store.get_cube(w.a, v1.id)
    assert cur is not None and cur.text == "first writer"


def test_concurrent_updates_of_one_cube_leave_one_winner(w: World) -> None:
    """Writers racing to replace the same version: one wins, the rest get Conflict,
    and exactly one version stays current (a lost update would leave two)."""
    v1 = make_cube(w.a, w.a1, "base")
    write_cubes(w.store, [v1], [unit(w.rng)])
    outcomes: list[str] = []
    lock = threading.Lock()

    def update(i: int) -> None:
        v2 = new_version(v1, text=f"writer {i}")
        try:
            w.store.write(
                WriteBatch(
                    cubes=[CubeWrite(cube=v2, embedding=unit(np.random.default_rng(i)))],
                    superseded=[(v1.id, 1)],
                    edges=[Edge(kind=EdgeKind.VERSION_OF, src=v2.ref, dst=v1.ref)],
                )
            )
            result = "ok"
        except Conflict:
            result = "conflict"
        except BaseException as exc:
            result = repr(exc)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    assert [c.version for c in w.store.history(w.a, v1.id)] == [1, 2]
    assert [c.version for c in w.store.get_current(w.a, [v1.id])] == [2]
    assert len(w.store.vector_search(w.a, [w.a1], unit(w.rng), 10)) == 1
    assert len(w.store.edges(w.a, v1.id)) == 1


# --- outbox ------------------------------------------------------------------------


def test_outbox_keeps_commit_order_until_acked(w: World) -> None:
    # A shared server may hold other writers' events too: look only at ours.
    def mine() -> list:  # type: ignore[type-arg]
        return [p for p in w.store.outbox_pending(100_000) if p.event.tenant in (w.a, w.b)]

    first = [make_cube(w.a, w.a1, f"first {i}") for i in range(3)]
    second = [make_cube(w.b, w.b1, f"second {i}") for i in range(2)]
    write_cubes(w.store, first, events=True)
    write_cubes(w.store, second, events=True)
    pending = mine()
    assert [p.event.subject for p in pending] == [c.id for c in first + second]
    assert all(p.topic == "memory.created" for p in pending)
    seqs = [p.seq for p in pending]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert pending[0].event == created_event_like(pending[0].event)
    limited = w.store.outbox_pending(limit=2)
    assert len(limited) == 2 and limited[0].seq < limited[1].seq
    w.store.outbox_ack(seqs[:2])
    w.store.outbox_ack(seqs[:2])  # acking twice is harmless
    assert [p.seq for p in mine()] == seqs[2:]
    w.store.outbox_ack(seqs[2:])
    assert mine() == []


def created_event_like(event):  # type: ignore[no-untyped-def]
    """Round trip through JSON: what the store returns must equal what it was given."""
    return type(event).model_validate_json(event.model_dump_json())


# --- keyword search ------------------------------------------------------------------

HOSTILE = [
    "",
    "   ",
    '"',
    '""',
    "'",
    "*",
    "a*",
    "NEAR(alpha beta)",
    "alpha NEAR beta",
    "AND",
    "OR OR OR",
    "NOT alpha",
    "-alpha",
    "text:alpha",
    "{text}: alpha",
    "^alpha",
    "alpha + beta",
    "(((",
    ")",
    "\x00",
    "alpha\x00beta",
    "日本語のテキスト",
    "🚀🚀",
    "Ünïcödé façade",
    "'; DROP TABLE cubes; --",
    "a" * 5000,
    " ".join(["alpha"] * 500),
    "the of and",
    "_",
    "foo_bar",
]


def test_text_search_survives_hostile_input(w: World) -> None:
    write_cubes(
        w.store,
        [
            make_cube(w.a, w.a1, "alpha beta gamma"),
            make_cube(w.a, w.a1, "日本語のテキスト facade façade"),
            make_cube(w.a, w.a1, "foo bar baz"),
        ],
    )
    for q in HOSTILE:
        hits = w.store.text_search(w.a, [w.a1], q, 10)
        assert isinstance(hits, list), q
    assert w.store.text_search(w.a, [w.a1], "", 10) == []
    assert w.store.text_search(w.a, [w.a1], "*", 10) == []
    assert len(w.store.text_search(w.a, [w.a1], "NEAR(alpha beta)", 10)) == 1
    assert len(w.store.text_search(w.a, [w.a1], "foo_bar", 10)) == 1


def test_text_search_ranks_and_stems(w: World) -> None:
    strong = make_cube(w.a, w.a1, "running shoes for running on running tracks")
    weak = make_cube(w.a, w.a1, "a long text about many things including one run")
    other = make_cube(w.a, w.a2, "runs in another namespace")
    none = make_cube(w.a, w.a1, "nothing relevant here")
    write_cubes(w.store, [strong, weak, other, none])
    hits = w.store.text_search(w.a, [w.a1], "Running?", 10)
    assert ids(hits) == [strong.id, weak.id]
    assert hits[0].score > hits[1].score > 0
    both = w.store.text_search(w.a, [w.a1, w.a2], "run", 10)
    assert set(ids(both)) == {strong.id, weak.id, other.id}
    assert len(w.store.text_search(w.a, [w.a1, w.a2], "run", 2)) == 2


def test_index_text_overrides_the_payload_text(w: World) -> None:
    cube = make_cube(w.a, w.a1, "payload words")
    w.store.write(WriteBatch(cubes=[CubeWrite(cube=cube, index_text="indexed words only")]))
    assert ids(w.store.text_search(w.a, [w.a1], "indexed", 5)) == [cube.id]
    assert w.store.text_search(w.a, [w.a1], "payload", 5) == []


# --- vector search ------------------------------------------------------------------


def _brute(vectors: np.ndarray, q: np.ndarray, keep: list[int], k: int) -> list[int]:
    scores = vectors[keep] @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [keep[i] for i in order]


def test_vector_top_k_matches_brute_force(w: World) -> None:
    n = 400
    vecs = unit(w.rng, n)
    cubes = [make_cube(w.a, w.a1 if i % 3 else w.a2, f"c{i}") for i in range(n)]
    write_cubes(w.store, cubes, vecs)
    for _ in range(5):
        q = unit(w.rng)
        hits = w.store.vector_search(w.a, [w.a1, w.a2], q, 10)
        want = _brute(vecs, q, list(range(n)), 10)
        assert ids(hits) == [cubes[i].id for i in want]
        assert [h.score for h in hits] == pytest.approx(
            [float(vecs[i] @ q) for i in want], abs=1e-5
        )
        only_a2 = [i for i in range(n) if i % 3 == 0]
        hits2 = w.store.vector_search(w.a, [w.a2], q, 7)
        assert ids(hits2) == [cubes[i].id for i in _brute(vecs, q, only_a2, 7)]
    # k larger than the namespace
    assert len(w.store.vector_search(w.a, [w.a2], unit(w.rng), 10_000)) == len(only_a2)
    assert w.store.vector_search(w.a, [new_id("nope")], unit(w.rng), 5) == []
    assert w.store.vector_search(w.a, [w.a1], unit(w.rng), 0) == []


def test_vector_search_follows_later_writes(w: World) -> None:
    """Whatever an adapter caches, reads reflect every committed write at once."""
    vecs = unit(w.rng, 50)
    cubes = [make_cube(w.a, w.a1, f"c{i}") for i in range(50)]
    write_cubes(w.store, cubes, vecs)
    q = vecs[3]
    assert ids(w.store.vector_search(w.a, [w.a1], q, 1)) == [cubes[3].id]
    twin = make_cube(w.a, w.a1, "twin")
    write_cubes(w.store, [twin], [q])
    assert set(ids(w.store.vector_search(w.a, [w.a1], q, 2))) == {cubes[3].id, twin.id}
    for c in cubes[:40]:  # many deletions (enough to make a cache compact)
        w.store.write(
            WriteBatch(
                cubes=[CubeWrite(cube=new_version(c, state=LifecycleState.deleted))],
                superseded=[(c.id, 1)],
            )
        )
    remaining = {c.id for c in cubes[40:]} | {twin.id}
    assert set(ids(w.store.vector_search(w.a, [w.a1], q, 100))) == remaining
    moved = new_version(cubes[45])
    w.store.write(
        WriteBatch(cubes=[CubeWrite(cube=moved, embedding=-q)], superseded=[(cubes[45].id, 1)])
    )
    hits = w.store.vector_search(w.a, [w.a1], -q, 1)
    assert ids(hits) == [cubes[45].id] and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_filters_apply_to_both_searches(w: World) -> None:
    rng = w.rng
    n = 120
    vecs = unit(rng, n)
    types = [SemanticType.fact, SemanticType.preference, SemanticType.event]
    origins = [Origin.user_input, Origin.inference_extraction]
    cubes = [
        make_cube(
            w.a,
            w.a1,
            f"shared keyword item{i}",
            tags=[f"t{i % 4}", *(["even"] if i % 2 == 0 else [])],
            semantic_type=types[i % 3],
            origin=origins[i % 2],
            event_time=None if i % 5 == 0 else T0 + timedelta(days=i),
            metadata={"group": f"g{i % 3}", "n": i % 4, "flag": i % 2 == 0, "one": 1},
        )
        for i in range(n)
    ]
    write_cubes(w.store, cubes, vecs)
    cases: list[tuple[SearchFilters, object]] = [
        (SearchFilters(tags_any=["t1", "t2"]), lambda i: i % 4 in (1, 2)),
        (SearchFilters(tags_all=["t0", "even"]), lambda i: i % 4 == 0),
        (SearchFilters(tags_all=["t1", "even"]), lambda i: False),
        (SearchFilters(semantic_type=[SemanticType.preference]), lambda i: i % 3 == 1),
        (SearchFilters(origin=[Origin.inference_extraction]), lambda i: i % 2 == 1),
        (
            SearchFilters(
                event_time_from=T0 + timedelta(days=10), event_time_to=T0 + timedelta(days=30)
            ),
            lambda i: i % 5 != 0 and 10 <= i <= 30,
        ),
        (SearchFilters(metadata={"group": "g2"}), lambda i: i % 3 == 2),
        (SearchFilters(metadata={"n": 3, "flag": False}), lambda i: i % 4 == 3),
        (SearchFilters(metadata={"flag": True}), lambda i: i % 2 == 0),
        (SearchFilters(metadata={"one": True}), lambda i: False),  # True is not 1
        (SearchFilters(metadata={"one": "1"}), lambda i: False),  # nor is "1"
        (SearchFilters(metadata={"missing": "x"}), lambda i: False),
        (SearchFilters(metadata={'we"ird': "x"}), lambda i: False),
        (
            SearchFilters(
                semantic_type=[SemanticType.fact], tags_any=["even"], origin=[Origin.user_input]
            ),
            lambda i: i % 3 == 0 and i % 2 == 0,
        ),
        (SearchFilters(tags_any=[]), lambda i: True),  # empty list = no condition
    ]
    q = unit(rng)
    for f, pred in cases:
        keep = [i for i in range(n) if pred(i)]  # type: ignore[operator]
        got = w.store.vector_search(w.a, [w.a1], q, 15, f)
        assert ids(got) == [cubes[i].id for i in _brute(vecs, q, keep, 15)], f
        text = w.store.text_search(w.a, [w.a1], "shared keyword", 1000, f)
        assert set(ids(text)) == {cubes[i].id for i in keep}, f


# --- expiry, health, scale, threads ------------------------------------------------


def test_due_for_expiry(w: World) -> None:
    past = make_cube(w.a, w.a1, "past", expires_at=T0 - timedelta(hours=1))
    edge = make_cube(w.b, w.b1, "exactly now", expires_at=T0)
    future = make_cube(w.a, w.a1, "future", expires_at=T0 + timedelta(hours=1))
    never = make_cube(w.a, w.a1, "never")
    write_cubes(w.store, [past, edge, future, never])
    mine = {w.a, w.b}
    due = [c for c in w.store.due_for_expiry(T0) if c.tenant in mine]
    assert {c.id for c in due} == {past.id, edge.id}
    assert len(w.store.due_for_expiry(T0, limit=1)) == 1
    w.store.write(
        WriteBatch(
            cubes=[CubeWrite(cube=new_version(past, state=LifecycleState.expired))],
            superseded=[(past.id, 1)],
        )
    )
    assert {c.id for c in w.store.due_for_expiry(T0) if c.tenant in mine} == {edge.id}


def test_ping_and_close(store: GraphStore) -> None:
    store.ping()
    store.close()
    with pytest.raises(Unavailable):
        store.ping()
    store.close()  # closing twice is fine


def test_large_batch(w: World) -> None:
    n = 5000
    vecs = unit(w.rng, n)
    cubes = [make_cube(w.a, w.a2, f"bulk item number {i}", tags=["bulk"]) for i in range(n)]
    write_cubes(w.store, cubes, vecs, events=True)
    hits = w.store.vector_search(w.a, [w.a2], vecs[4321], 3)
    assert hits[0].cube_id == cubes[4321].id
    assert len(w.store.text_search(w.a, [w.a2], "bulk", 10_000)) == n
    assert sum(p.event.tenant == w.a for p in w.store.outbox_pending(limit=100_000)) == n


def test_concurrent_writes_and_searches(w: World) -> None:
    errors: list[BaseException] = []
    written: list[str] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for i in range(20):
                c = make_cube(w.a, w.a1, f"threaded {seed} {i}")
                write_cubes(w.store, [c], [unit(rng)], events=True)
                with lock:
                    written.append(c.id)
        except BaseException as exc:
            errors.append(exc)

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                w.store.vector_search(w.a, [w.a1], unit(rng), 5)
                w.store.text_search(w.a, [w.a1], "threaded", 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=reader, args=(s,)) for s in range(10, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(w.store.get_current(w.a, written)) == 60
    assert len(w.store.vector_search(w.a, [w.a1], unit(w.rng), 100)) == 60


def test_odd_metadata_values_neither_fail_nor_match(w: World) -> None:
    odd = make_cube(
        w.a,
        w.a1,
        "odd metadata",
        metadata={"big": 2**70, "nested": {"a": 1}, "none": None, "f": 2.0},
    )
    write_cubes(w.store, [odd], [unit(w.rng)])
    assert w.store.get_cube(w.a, odd.id) == odd
    for meta in ({"big": 2**70}, {"big": 1}, {"nested": "x"}, {"none": "null"}):
        f = SearchFilters(metadata=meta)
        assert w.store.vector_search(w.a, [w.a1], unit(w.rng), 5, f) == [], meta
        assert w.store.text_search(w.a, [w.a1], "odd", 5, f) == [], meta
    f2 = SearchFilters(metadata={"f": 2})  # JSON numbers: 2 equals 2.0
    assert ids(w.store.text_search(w.a, [w.a1], "odd", 5, f2)) == [odd.id]


def test_keyword_hits_are_found_behind_many_better_ones(w: World) -> None:
    """Another tenant's (or a filtered-out) stronger matches must not hide weaker ones."""
    loud = [make_cube(w.b, w.b1, "apple apple apple apple") for _ in range(700)]
    loud += [make_cube(w.a, w.a2, "apple apple apple apple") for _ in range(700)]
    quiet = [
        make_cube(w.a, w.a1, f"one apple among many other words in sentence {i}", tags=["q"])
        for i in range(3)
    ]
    write_cubes(w.store, loud + quiet)
    assert set(ids(w.store.text_search(w.a, [w.a1], "apple", 10))) == {c.id for c in quiet}
    both = w.store.text_search(w.a, [w.a1, w.a2], "apple", 2000, SearchFilters(tags_any=["q"]))
    assert set(ids(both)) == {c.id for c in quiet}
    assert len(w.store.text_search(w.a, [w.a1, w.a2], "apple", 2000)) == 703


def test_huge_k_is_fine(w: World) -> None:
    cube = make_cube(w.a, w.a1, "needle")
    write_cubes(w.store, [cube], [unit(w.rng)])
    assert ids(w.store.text_search(w.a, [w.a1], "needle", 2**62)) == [cube.id]
    assert ids(w.store.vector_search(w.a, [w.a1], unit(w.rng), 2**62)) == [cube.id]
