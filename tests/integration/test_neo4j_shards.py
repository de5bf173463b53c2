"""A namespace that outgrows the shared vector index moves to its own (neo4j_shards).

Runs against the Neo4j of infra/local with a small threshold, so the move
happens after a few dozen vectors; results must equal brute force before,
during and after the move, and superseded versions must leave the new index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from services.vault.stores.neo4j_graph import Neo4jGraphStore
from services.vault.stores.neo4j_shards import READY, shard_label
from shared.ports.graph import CubeWrite, WriteBatch
from shared.schemas.memcube import MemCube
from tests.contract.adapters import new_id, reachable
from tests.contract.graph_support import DIM, make_cube, new_version, setup_tenant, unit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not reachable("127.0.0.1", 7687), reason="Neo4j not running"),
]

PASSWORD = os.environ.get("MGINFRA_NEO4J_PASSWORD", "memgrid-dev-password")
THRESHOLD = 40


@pytest.fixture
def store() -> Iterator[Neo4jGraphStore]:
    s = Neo4jGraphStore(
        "bolt://127.0.0.1:7687", DIM, password=PASSWORD, shard_min_vectors=THRESHOLD
    )
    try:
        yield s
    finally:
        s.close()


def write(store: Neo4jGraphStore, cubes: list[MemCube], vecs: np.ndarray) -> None:
    store.write(
        WriteBatch(cubes=[CubeWrite(cube=c, embedding=v) for c, v in zip(cubes, vecs, strict=True)])
    )


def brute(vectors: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[str]:
    ids = list(vectors)
    scores = np.stack([vectors[i] for i in ids]) @ q
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def shard_state(store: Neo4jGraphStore, tenant: str, ns: str) -> tuple[str | None, str | None]:
    rows = store._rows(
        "MATCH (n:Namespace {id: $ns}) WHERE n.tenant = $t"
        " RETURN n.vector_shard AS label, n.vector_shard_state AS state",
        ns=ns,
        t=tenant,
    )
    return rows[0]["label"], rows[0]["state"]


def labels_of(store: Neo4jGraphStore, tenant: str, cube_id: str) -> list[list[str]]:
    rows = store._rows(
        "MATCH (c:MemCube {id: $id}) WHERE c.tenant = $t RETURN labels(c) AS l ORDER BY c.version",
        id=cube_id,
        t=tenant,
    )
    return [sorted(r["l"]) for r in rows]


def test_a_large_namespace_moves_to_its_own_index_and_stays_exact(
    store: Neo4jGraphStore,
) -> None:
    rng = np.random.default_rng(3)
    tenant, other = new_id("ts"), new_id("tt")
    big, small, foreign = new_id("ns"), new_id("ns"), new_id("ns")
    setup_tenant(store, tenant, big, small)
    setup_tenant(store, other, foreign)
    vectors: dict[str, np.ndarray] = {}
    cubes: dict[str, MemCube] = {}
    # Another tenant's vectors are nearly identical to the queries: never returned.
    foreign_vecs = unit(rng, 5)
    write(store, [make_cube(other, foreign) for _ in range(5)], foreign_vecs)
    small_cubes = [make_cube(tenant, small) for _ in range(5)]
    small_vecs = unit(rng, 5)
    write(store, small_cubes, small_vecs)
    for _ in range(6):  # 60 vectors in batches of 10: crosses the threshold
        batch = [make_cube(tenant, big) for _ in range(10)]
        vecs = unit(rng, 10)
        write(store, batch, vecs)
        for c, v in zip(batch, vecs, strict=True):
            vectors[c.id], cubes[c.id] = v, c
    store.wait_for_shards()
    label, state = shard_state(store, tenant, big)
    assert label == shard_label(DIM, tenant, big) and state == READY
    assert shard_state(store, tenant, small) == (None, None)
    some = next(iter(cubes))
    assert label in labels_of(store, tenant, some)[0]
    assert "Vector16" not in labels_of(store, tenant, some)[0]

    for q in list(foreign_vecs) + list(unit(rng, 5)):
        hits = store.vector_search(tenant, [big], q, 10)
        assert [h.cube_id for h in hits] == brute(vectors, q, 10)
    # Both namespaces at once: the shard's and the shared index's lists merged.
    both = {**vectors, **{c.id: v for c, v in zip(small_cubes, small_vecs, strict=True)}}
    q = small_vecs[0]
    assert [h.cube_id for h in store.vector_search(tenant, [big, small], q, 8)] == brute(both, q, 8)

    # New writes go straight to the namespace's index.
    late = make_cube(tenant, big)
    late_vec = unit(rng)
    write(store, [late], late_vec[None, :])
    assert [h.cube_id for h in store.vector_search(tenant, [big], late_vec, 1)] == [late.id]
    assert label in labels_of(store, tenant, late.id)[0]

    # A new version replaces the old one in the index; the old keeps no vector label.
    v2 = new_version(cubes[some], text="changed")
    new_vec = unit(rng)
    store.write(WriteBatch(cubes=[CubeWrite(cube=v2, embedding=new_vec)], superseded=[(some, 1)]))
    old_labels, new_labels = labels_of(store, tenant, some)
    assert label not in old_labels and label in new_labels
    assert [h.cube_id for h in store.vector_search(tenant, [big], new_vec, 1)] == [some]
    hits = store.vector_search(tenant, [big], vectors[some], 70)
    assert sum(h.cube_id == some for h in hits) == 1

    # The other tenant cannot reach the shard, even naming the namespace.
    assert store.vector_search(other, [big], vectors[some], 5) == []


def test_stragglers_in_the_shared_index_are_swept(store: Neo4jGraphStore) -> None:
    """A vector that landed in the shared index after the move (another replica's
    write racing the move) is still found, and the next check moves it."""
    rng = np.random.default_rng(5)
    tenant, ns = new_id("ts"), new_id("ns")
    setup_tenant(store, tenant, ns)
    write(store, [make_cube(tenant, ns) for _ in range(THRESHOLD + 5)], unit(rng, THRESHOLD + 5))
    store.wait_for_shards()
    label, state = shard_state(store, tenant, ns)
    assert state == READY and label is not None
    stray = make_cube(tenant, ns)
    stray_vec = unit(rng)
    write(store, [stray], stray_vec[None, :])
    # Put it back in the shared index by hand, as a racing writer would have.
    store._run_write(f"MATCH (c:MemCube {{id: $id}}) REMOVE c:{label} SET c:Vector16", id=stray.id)
    store._shards.check(tenant, ns)
    assert label in labels_of(store, tenant, stray.id)[0]
    assert [h.cube_id for h in store.vector_search(tenant, [ns], stray_vec, 1)] == [stray.id]
