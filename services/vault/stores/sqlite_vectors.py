"""In-memory vector index of the SQLite store: one float32 matrix per namespace.

Brute-force cosine search, exact below QUANT_MIN_ROWS rows, so the embedded store
and Neo4j's vector index are held to the same contract test. Above it, an
unfiltered query first scores an int8 copy of the matrix (a quarter of the bytes
to stream: the float32 product was 16-25 ms at 100k x 384 on two shared cores,
the int8 one ~2 ms) and re-ranks the best OVERFETCH x k rows in float32 — no
graph index to build on the write path, and recall@100 against float32 brute
force was 1.0 on the bench corpus. Rows are kept in increasing ``rid``
order (SQLite assigns rids monotonically), so a set of allowed rids coming from
SQL maps onto matrix rows with one binary search.

Superseded or tombstoned rows are only flagged invalid; the arrays are compacted
once enough of them pile up, so a write never copies the whole matrix.

Concurrency: mutations happen under the cache lock; a search takes a
``Snapshot`` under the lock and computes outside it. Appends write past the
snapshot's end and growth or compaction allocate new arrays, so a snapshot never
changes under a running search.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numkong
import numpy as np

from services.vault.stores.sqlite_spaces import SpaceCache
from shared.schemas.memcube import Origin, SemanticType

SEMANTIC_CODES: dict[str, int] = {str(s): i for i, s in enumerate(SemanticType)}
ORIGIN_CODES: dict[str, int] = {str(o): i for i, o in enumerate(Origin)}

# Below this share of rows passing the filters, scoring only those rows (a gather)
# is cheaper than scoring all of them.
GATHER_FRACTION = 0.125
COMPACT_MIN_INVALID = 32
SAMPLE_MIN_ROWS = 16_384
SAMPLE_STRIDE = 16
COMPACT_FRACTION = 0.25
# From this many rows, unfiltered searches take candidates from the int8 copy
# first (exact float32 below it: cheap there, and bit-for-bit brute force).
QUANT_MIN_ROWS = 20_000
OVERFETCH = 8
QUANT_THREADS = 1  # the keyword search runs on the other core meanwhile


def quantise(v: np.ndarray) -> np.ndarray:
    """Unit vectors to int8: each coordinate x 127, rounded."""
    return np.rint(np.asarray(v, dtype=np.float32) * 127).astype(np.int8)


@dataclass(frozen=True)
class VectorRow:
    rid: int
    cube_id: str
    tenant: str
    namespace: str
    vector: np.ndarray
    semantic_type: int
    origin: int
    event_time: float  # NaN when unknown


@dataclass(frozen=True)
class ColumnFilter:
    """Conditions checked on the cached columns, without asking SQLite."""

    semantic_types: np.ndarray | None = None  # int8 codes
    origins: np.ndarray | None = None  # int8 codes
    time_from: float | None = None
    time_to: float | None = None
    allowed_rids: np.ndarray | None = None  # sorted int64, from a SQL filter

    @property
    def empty(self) -> bool:
        return (
            self.semantic_types is None
            and self.origins is None
            and self.time_from is None
            and self.time_to is None
            and self.allowed_rids is None
        )


@dataclass(frozen=True)
class Snapshot:
    n: int
    mat: np.ndarray
    mat8: np.ndarray  # the same rows quantised to int8 (x 127), for the first pass
    rids: np.ndarray
    sem: np.ndarray
    origin: np.ndarray
    etime: np.ndarray
    valid: np.ndarray | None  # None: every row valid
    ids: list[str]

    def mask(self, f: ColumnFilter) -> np.ndarray | None:
        """Rows that pass ``f`` and are valid; None when every row does."""
        return column_mask(self.n, self.valid, self.rids, self.sem, self.origin, self.etime, f)

    def search(self, q: np.ndarray, k: int, f: ColumnFilter) -> list[tuple[str, float]]:
        if self.n == 0 or k <= 0:
            return []
        if f.empty and self.n >= QUANT_MIN_ROWS and k * OVERFETCH * 4 <= self.n:
            invalid = 0 if self.valid is None else self.n - int(self.valid.sum())
            if invalid <= self.n // 100:
                return self._search_quantised(q, k, k * OVERFETCH + invalid)
        if f.empty:
            scores = np.dot(self.mat, q)
            if self.valid is None:
                return self._top(scores, None, k)
            bad = np.flatnonzero(~self.valid)
            if bad.size <= self.n // 100:
                # A few -inf are harmless; many would slow argpartition down badly
                # (it degrades on long runs of equal values).
                scores[bad] = -np.inf
                return self._top(scores, None, k)
            rows = np.flatnonzero(self.valid)
            return self._top(scores[rows], rows, k)
        mask = self.mask(f)
        assert mask is not None
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        if rows.size <= self.n * GATHER_FRACTION:
            return self._top(np.dot(self.mat[rows], q), rows, k)
        return self._top(np.dot(self.mat, q)[rows], rows, k)

    def _search_quantised(self, q: np.ndarray, k: int, count: int) -> list[tuple[str, float]]:
        """Candidates by int8 dot products (numkong's SIMD kernels read a quarter
        of float32's bytes: ~2 ms instead of ~16 ms at 100k x 384), then the
        exact float32 cosine of those candidates decides.

        Quantisation moves a score by ~0.005 typically; fetching OVERFETCH x k
        candidates leaves the true top k among them (recall@100 checked against
        brute force on the bench corpus, docs/retrieval.md).
        """
        approx = np.asarray(
            numkong.cdist(quantise(q)[None, :], self.mat8, metric="dot", threads=QUANT_THREADS)
        ).reshape(-1)
        rows = top_k_indices(approx, count)
        if self.valid is not None:
            rows = rows[self.valid[rows]]
        return self._top(self.mat[rows] @ q, rows, k)

    def _top(self, scores: np.ndarray, rows: np.ndarray | None, k: int) -> list[tuple[str, float]]:
        idx = top_k_indices(scores, k)
        out = []
        for i in idx:
            s = float(scores[i])
            if s == -np.inf:
                break
            out.append((self.ids[int(rows[i]) if rows is not None else int(i)], s))
        return out


def column_mask(
    n: int,
    valid: np.ndarray | None,
    rids: np.ndarray,
    sem: np.ndarray,
    origin: np.ndarray,
    etime: np.ndarray,
    f: ColumnFilter,
) -> np.ndarray | None:
    """Rows that pass ``f`` and are valid; None when every row does.

    Shared by the vector and the keyword caches, which keep the same columns.
    """
    if f.empty and valid is None:
        return None
    m = np.ones(n, dtype=bool) if valid is None else valid.copy()
    if f.semantic_types is not None:
        m &= _lookup(f.semantic_types)[sem.view(np.uint8)]
    if f.origins is not None:
        m &= _lookup(f.origins)[origin.view(np.uint8)]
    # NaN compares False, so cubes without an event time fail any time bound.
    if f.time_from is not None:
        m &= etime >= f.time_from
    if f.time_to is not None:
        m &= etime <= f.time_to
    if f.allowed_rids is not None:
        allowed = np.zeros(n, dtype=bool)
        if f.allowed_rids.size and n:
            pos = np.searchsorted(rids, f.allowed_rids)
            inside = pos < n
            pos = pos[inside]
            allowed[pos[rids[pos] == f.allowed_rids[inside]]] = True
        m &= allowed
    return m


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first.

    On large arrays a threshold from a strided sample cuts the candidates first:
    the k-th largest sampled score is a lower bound of the k-th largest overall
    (the sample is a subset), so no true top-k entry is dropped. This costs a
    fraction of an argpartition over every score.
    """
    n = scores.size
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    cand: np.ndarray | None = None
    if n >= SAMPLE_MIN_ROWS and k * SAMPLE_STRIDE * 4 <= n:
        sample = scores[::SAMPLE_STRIDE]
        threshold = np.partition(sample, sample.size - k)[sample.size - k]
        cand = np.flatnonzero(scores >= threshold)
        vals = scores[cand]
    else:
        vals = scores
    if k < vals.size:
        part = np.argpartition(vals, vals.size - k)[vals.size - k :]
    else:
        part = np.arange(vals.size)
    part = part[np.argsort(-vals[part], kind="stable")]
    return part if cand is None else cand[part]


def _lookup(codes: np.ndarray) -> np.ndarray:
    """A 256-entry table: indexing it with uint8 codes is a fast ``isin``."""
    table = np.zeros(256, dtype=bool)
    table[codes.astype(np.uint8)] = True
    return table


class NamespaceVectors:
    """The rows of one (tenant, namespace), in increasing rid order."""

    def __init__(
        self,
        dim: int,
        rids: np.ndarray,
        ids: list[str],
        mat: np.ndarray,
        sem: np.ndarray,
        origin: np.ndarray,
        etime: np.ndarray,
    ) -> None:
        self.dim = dim
        self.n = len(ids)
        cap = max(64, self.n + self.n // 8)
        self._mat = np.empty((cap, dim), dtype=np.float32)
        self._mat8 = np.empty((cap, dim), dtype=np.int8)
        self._rids = np.empty(cap, dtype=np.int64)
        self._sem = np.empty(cap, dtype=np.int8)
        self._origin = np.empty(cap, dtype=np.int8)
        self._etime = np.empty(cap, dtype=np.float64)
        self._valid = np.ones(cap, dtype=bool)
        self._set(0, rids, mat, sem, origin, etime)
        self._ids = list(ids)
        self._row_of = {cid: i for i, cid in enumerate(ids)}
        self.invalid = 0

    @classmethod
    def empty(cls, dim: int) -> NamespaceVectors:
        return cls(
            dim,
            np.empty(0, np.int64),
            [],
            np.empty((0, dim), np.float32),
            np.empty(0, np.int8),
            np.empty(0, np.int8),
            np.empty(0, np.float64),
        )

    def _set(
        self,
        at: int,
        rids: np.ndarray,
        mat: np.ndarray,
        sem: np.ndarray,
        origin: np.ndarray,
        etime: np.ndarray,
    ) -> None:
        end = at + len(rids)
        self._mat[at:end] = mat
        self._mat8[at:end] = quantise(mat)
        self._rids[at:end] = rids
        self._sem[at:end] = sem
        self._origin[at:end] = origin
        self._etime[at:end] = etime
        self._valid[at:end] = True

    def _reallocate(self, cap: int, keep: np.ndarray | None = None) -> None:
        """New arrays of capacity ``cap`` holding the kept rows (all when ``keep`` is None)."""
        sel = slice(0, self.n) if keep is None else keep
        mat = self._mat[sel]
        rids, sem = self._rids[sel], self._sem[sel]
        origin, etime = self._origin[sel], self._etime[sel]
        valid = self._valid[sel]
        n = len(rids)
        self._mat = np.empty((cap, self.dim), dtype=np.float32)
        self._mat8 = np.empty((cap, self.dim), dtype=np.int8)
        self._rids = np.empty(cap, dtype=np.int64)
        self._sem = np.empty(cap, dtype=np.int8)
        self._origin = np.empty(cap, dtype=np.int8)
        self._etime = np.empty(cap, dtype=np.float64)
        self._valid = np.ones(cap, dtype=bool)
        self._set(0, rids, mat, sem, origin, etime)
        self._valid[:n] = valid
        self.n = n

    def append(self, rows: Sequence[VectorRow]) -> None:
        if not rows:
            return
        need = self.n + len(rows)
        if need > len(self._rids):
            self._reallocate(max(need, len(self._rids) * 3 // 2 + 64))
        base = self.n
        self._set(
            base,
            np.fromiter((r.rid for r in rows), np.int64, len(rows)),
            np.stack([r.vector for r in rows]),
            np.fromiter((r.semantic_type for r in rows), np.int8, len(rows)),
            np.fromiter((r.origin for r in rows), np.int8, len(rows)),
            np.fromiter((r.event_time for r in rows), np.float64, len(rows)),
        )
        for i, row in enumerate(rows):
            # A re-inserted id (a new version) replaces its old row.
            self.discard((row.cube_id,))
            self._row_of[row.cube_id] = base + i
        self._ids.extend(r.cube_id for r in rows)
        self.n = need

    def discard(self, cube_ids: Iterable[str]) -> None:
        for cid in cube_ids:
            row = self._row_of.pop(cid, None)
            if row is not None:
                self._valid[row] = False
                self.invalid += 1

    def maybe_compact(self) -> None:
        if self.invalid < max(COMPACT_MIN_INVALID, self.n * COMPACT_FRACTION):
            return
        keep = np.flatnonzero(self._valid[: self.n])
        ids = [self._ids[i] for i in keep]
        self._reallocate(max(64, len(keep) + len(keep) // 8), keep)
        self._ids = ids
        self._row_of = {cid: i for i, cid in enumerate(ids)}
        self.invalid = 0

    def snapshot(self) -> Snapshot:
        n = self.n
        return Snapshot(
            n=n,
            mat=self._mat[:n],
            mat8=self._mat8[:n],
            rids=self._rids[:n],
            sem=self._sem[:n],
            origin=self._origin[:n],
            etime=self._etime[:n],
            valid=self._valid[:n].copy() if self.invalid else None,
            ids=self._ids,
        )

    @property
    def live(self) -> int:
        return self.n - self.invalid


class VectorCache(SpaceCache[NamespaceVectors, VectorRow]):
    """Every loaded (tenant, namespace) matrix; namespaces load lazily on first search."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def snapshots(self, tenant: str, namespaces: Iterable[str]) -> list[Snapshot]:
        with self._lock:
            return [
                self._spaces[(tenant, ns)].snapshot()
                for ns in namespaces
                if (tenant, ns) in self._spaces
            ]


def search_snapshots(
    snaps: Sequence[Snapshot], q: np.ndarray, k: int, f: ColumnFilter
) -> list[tuple[str, float]]:
    """Top ``k`` over several namespaces: each one's top k, merged."""
    hits: list[tuple[str, float]] = []
    for snap in snaps:
        hits.extend(snap.search(q, k, f))
    hits.sort(key=lambda h: -h[1])
    return hits[:k]
