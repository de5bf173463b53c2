"""The SQLite store's in-memory vector index, checked against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.vault.stores.sqlite_vectors import (
    ColumnFilter,
    NamespaceVectors,
    VectorCache,
    VectorRow,
    search_snapshots,
    top_k_indices,
)

pytestmark = pytest.mark.unit

DIM = 8


def rows(rng: np.random.Generator, start: int, n: int, ns: str = "ns") -> list[VectorRow]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [
        VectorRow(
            rid=start + i,
            cube_id=f"c{start + i}",
            tenant="t",
            namespace=ns,
            vector=v[i],
            semantic_type=(start + i) % 3,
            origin=(start + i) % 2,
            event_time=math.nan if (start + i) % 4 == 0 else float(start + i),
        )
        for i in range(n)
    ]


def brute(live: dict[str, VectorRow], q: np.ndarray, k: int, keep=lambda r: True) -> list[str]:  # type: ignore[no-untyped-def]
    cands = [r for r in live.values() if keep(r)]
    cands.sort(key=lambda r: -float(r.vector @ q))
    return [r.cube_id for r in cands[:k]]


def test_append_discard_compact_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    space = NamespaceVectors.empty(DIM)
    live: dict[str, VectorRow] = {}
    rid = 1
    for step in range(30):
        batch = rows(rng, rid, int(rng.integers(1, 60)))
        rid += len(batch)
        space.append(batch)
        live.update({r.cube_id: r for r in batch})
        gone = list(
            rng.choice(sorted(live), size=min(len(live), int(rng.integers(0, 40))), replace=False)
        )
        space.discard(gone)
        for cid in gone:
            del live[cid]
        space.maybe_compact()
        assert space.live == len(live)
        q = rows(rng, 10**6, 1)[0].vector
        snap = space.snapshot()
        got = [cid for cid, _ in snap.search(q, 10, ColumnFilter())]
        assert got == brute(live, q, 10), step


def test_new_version_replaces_its_row() -> None:
    rng = np.random.default_rng(4)
    space = NamespaceVectors.empty(DIM)
    first = rows(rng, 1, 5)
    space.append(first)
    again = VectorRow(**{**first[2].__dict__, "rid": 10, "vector": -first[2].vector})
    space.append([again])
    hits = space.snapshot().search(-first[2].vector, 10, ColumnFilter())
    assert [cid for cid, _ in hits].count("c3") == 1
    assert hits[0][0] == "c3" and hits[0][1] == pytest.approx(1.0, abs=1e-6)


def test_a_snapshot_does_not_change_under_a_search() -> None:
    rng = np.random.default_rng(5)
    space = NamespaceVectors.empty(DIM)
    space.append(rows(rng, 1, 10))
    snap = space.snapshot()
    q = snap.mat[0].copy()
    before = snap.search(q, 5, ColumnFilter())
    space.append(rows(rng, 11, 500))  # grows the arrays
    space.discard([f"c{i}" for i in range(1, 10)])
    space.maybe_compact()
    assert snap.search(q, 5, ColumnFilter()) == before


def test_filters_match_brute_force() -> None:
    rng = np.random.default_rng(6)
    space = NamespaceVectors.empty(DIM)
    batch = rows(rng, 1, 400)
    space.append(batch)
    space.discard([f"c{i}" for i in range(1, 401, 7)])
    live = {r.cube_id: r for r in batch if (r.rid - 1) % 7 != 0}
    allowed = np.array([*sorted(r.rid for r in batch if r.rid % 5 == 0), 10_000], np.int64)
    cases = [
        (ColumnFilter(semantic_types=np.array([1], np.int8)), lambda r: r.semantic_type == 1),
        (ColumnFilter(origins=np.array([0], np.int8)), lambda r: r.origin == 0),
        (ColumnFilter(time_from=50.0, time_to=150.0), lambda r: 50 <= r.event_time <= 150),
        (ColumnFilter(allowed_rids=allowed), lambda r: r.rid % 5 == 0),
        (ColumnFilter(allowed_rids=np.empty(0, np.int64)), lambda r: False),
        (
            ColumnFilter(semantic_types=np.array([0, 2], np.int8), time_from=100.0),
            lambda r: r.semantic_type in (0, 2) and r.event_time >= 100,
        ),
    ]
    snap = space.snapshot()
    for f, keep in cases:
        for k in (1, 10, 1000):
            q = rows(rng, 10**6, 1)[0].vector
            got = [cid for cid, _ in snap.search(q, k, f)]
            assert got == brute(live, q, k, keep)


def test_cache_applies_only_to_loaded_namespaces() -> None:
    rng = np.random.default_rng(7)
    cache = VectorCache(DIM)
    space = NamespaceVectors.empty(DIM)
    cache.install("t", "ns", space)
    cache.apply([], rows(rng, 1, 3, "ns") + rows(rng, 4, 3, "other"))
    assert not cache.is_loaded("t", "other")
    assert space.live == 3
    cache.apply(["c1", "c5"], [])
    assert space.live == 2
    q = np.ones(DIM, np.float32) / math.sqrt(DIM)
    hits = search_snapshots(cache.snapshots("t", ["ns", "other"]), q, 10, ColumnFilter())
    assert {cid for cid, _ in hits} == {"c2", "c3"}
    cache.clear()
    assert not cache.is_loaded("t", "ns")


@pytest.mark.parametrize("n, k", [(5, 10), (100, 3), (50_000, 1), (50_000, 10), (50_000, 500)])
def test_top_k_indices_is_exact(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    for dupes in (False, True):
        scores = rng.standard_normal(n).astype(np.float32)
        if dupes:
            scores = np.round(scores, 1)  # many ties
            scores[: n // 2] = -np.inf
        got = top_k_indices(scores, k)
        want = np.sort(scores)[::-1][: min(k, n)]
        assert np.array_equal(scores[got], want)
        assert len(set(got.tolist())) == len(got)
