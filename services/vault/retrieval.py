"""Hybrid retrieval: dense + keyword + time, fused from normalised scores.

Each ranker returns candidates with scores on its own scale (cosine for dense,
BM25 for keyword, closeness to a named time for time). Fusion puts them on one
scale and adds them with weights from settings (``search.fusion``):

* ``zscore`` (default): each list's scores standardised (mean 0, sd 1) over its
  candidates; a candidate missing from a list gets that list's lowest value.
* ``minmax``: each list rescaled to [0, 1]; missing counts as 0.
* ``rrf``: reciprocal-rank fusion, sum of weight / (k + rank), ranks only.

Why z-scores by default: measured on the LoCoMo dev split (bench/locomo_recall.py
--fusion, figures in docs/benchmarks.md), equal-weight score fusion recalled
clearly more evidence than RRF at its usual k=60, because RRF throws away how far
ahead a strong BM25 match (a rare name, a place) is; z-scores keep that margin
while staying insensitive to the raw scale of BM25, which grows with the corpus.
Equal weights were kept rather than tuned to the split.

The time signal: when the query names a time (a month, a year, an ISO date), the
cubes whose event time falls in that window are ranked by closeness to it and
fused in too; otherwise time contributes nothing, rather than biasing every query
to recent memories.
"""

from __future__ import annotations

import calendar
import contextvars
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from shared.ports.embedder import Embedder
from shared.ports.graph import GraphStore, Scored
from shared.schemas.api import SearchFilters
from shared.schemas.memcube import MemCube
from shared.settings import SearchSettings
from shared.telemetry import traced

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS |= {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})\s+({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.I)
_MONTH_DAY_YEAR = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.I)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.I)
_YEAR = re.compile(r"\b(19\d{2}|20\d{2})\b")


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @property
    def middle(self) -> datetime:
        return self.start + (self.end - self.start) / 2


def _day(y: int, m: int, d: int) -> TimeWindow | None:
    try:
        start = datetime(y, m, d, tzinfo=UTC)
    except ValueError:
        return None
    return TimeWindow(start, start + timedelta(days=1))


def time_window(query: str) -> TimeWindow | None:
    """The most specific absolute time the query names, if any."""
    if m := _ISO_DATE.search(query):
        return _day(int(m[1]), int(m[2]), int(m[3]))
    if m := _DAY_MONTH_YEAR.search(query):
        return _day(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
    if m := _MONTH_DAY_YEAR.search(query):
        return _day(int(m[3]), _MONTHS[m[1].lower()], int(m[2]))
    if m := _MONTH_YEAR.search(query):
        y, mo = int(m[2]), _MONTHS[m[1].lower()]
        last = calendar.monthrange(y, mo)[1]
        return TimeWindow(
            datetime(y, mo, 1, tzinfo=UTC), datetime(y, mo, last, tzinfo=UTC) + timedelta(days=1)
        )
    if m := _YEAR.search(query):
        y = int(m[1])
        return TimeWindow(datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC))
    return None


def rrf(ranked_lists: Sequence[tuple[float, Sequence[str]]], k: int) -> dict[str, float]:
    """Weighted reciprocal-rank fusion: sum of weight / (k + rank) over the lists."""
    fused: dict[str, float] = {}
    for weight, ids in ranked_lists:
        if weight <= 0:
            continue
        for rank, cube_id in enumerate(ids, start=1):
            fused[cube_id] = fused.get(cube_id, 0.0) + weight / (k + rank)
    return fused


def fuse(lists: Sequence[tuple[float, Sequence[Scored]]], method: str, k: int) -> dict[str, float]:
    """Combines scored lists by ``method`` (zscore, minmax, rrf); higher is better."""
    if method == "rrf":
        return rrf([(w, [s.cube_id for s in lst]) for w, lst in lists], k)
    ids = {s.cube_id for _, lst in lists for s in lst}
    fused = dict.fromkeys(ids, 0.0)
    for weight, lst in lists:
        if weight <= 0 or not lst:
            continue
        scores = np.fromiter((s.score for s in lst), dtype=np.float64, count=len(lst))
        if method == "zscore":
            sd = float(scores.std())
            norm = (scores - scores.mean()) / sd if sd > 0 else np.zeros_like(scores)
            missing = float(norm.min())
        elif method == "minmax":
            span = float(scores.max() - scores.min())
            norm = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
            missing = 0.0
        else:
            raise ValueError(f"unknown fusion method {method!r}")
        seen = {}
        for s, v in zip(lst, norm, strict=True):
            seen[s.cube_id] = float(v)
        for cube_id in ids:
            fused[cube_id] += weight * seen.get(cube_id, missing)
    return fused


class Retriever:
    def __init__(self, store: GraphStore, embedder: Embedder, cfg: SearchSettings) -> None:
        self._store = store
        self._embedder = embedder
        self._cfg = cfg
        # Keyword search runs beside query embedding + vector search: SQLite, ONNX
        # Runtime/torch and numpy all release the GIL, so the two overlap on two cores.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="retrieve")

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    @traced("vault.retrieve")
    def search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        query: str,
        top_k: int,
        filters: SearchFilters | None,
        now: datetime,
    ) -> list[tuple[MemCube, float]]:
        cfg = self._cfg
        n = max(cfg.candidates, top_k * 3)
        ctx = contextvars.copy_context()  # keeps the trace: worker spans join this one
        keyword_job = self._pool.submit(
            ctx.run, self._store.text_search, tenant, namespaces, query, n, filters
        )
        vector = self._embedder.encode([query])[0]
        dense = self._store.vector_search(tenant, namespaces, vector, n, filters)
        keyword = keyword_job.result()
        lists: list[tuple[float, Sequence[Scored]]] = [
            (cfg.dense_weight, dense),
            (cfg.keyword_weight, keyword),
        ]
        cubes: dict[str, MemCube] = {}
        window = time_window(query)
        if window is not None and cfg.time_weight > 0:
            ids = list({s.cube_id for s in dense} | {s.cube_id for s in keyword})
            cubes = {c.id: c for c in self._store.get_current(tenant, ids)}
            lists.append((cfg.time_weight, _by_time(cubes.values(), window)))
        fused = fuse(lists, cfg.fusion, cfg.rrf_k)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        out: list[tuple[MemCube, float]] = []
        # Fetch cubes page by page: only the head of the ranking is ever read,
        # and a few may be dropped (expired, no longer current) on the way.
        page = max(top_k * 2, 10)
        for start in range(0, len(ranked), page):
            chunk = ranked[start : start + page]
            missing = [cid for cid, _ in chunk if cid not in cubes]
            if missing:
                cubes.update((c.id, c) for c in self._store.get_current(tenant, missing))
            for cube_id, score in chunk:
                cube = cubes.get(cube_id)
                if cube is None or not cube.searchable or _expired(cube, now):
                    continue
                out.append((cube, score))
                if len(out) == top_k:
                    return out
        return out


def _by_time(cubes: Iterable[MemCube], window: TimeWindow) -> list[Scored]:
    """Cubes inside the window, scored 1 at its middle down to 0 at its edges."""
    half = max((window.end - window.start).total_seconds() / 2, 1.0)
    out = []
    for cube in cubes:
        t = cube.event_time
        if t is not None and window.start <= t < window.end:
            closeness = 1.0 - abs((t - window.middle).total_seconds()) / half
            out.append(Scored(cube.id, max(closeness, 0.0)))
    return sorted(out, key=lambda s: -s.score)


def _expired(cube: MemCube, now: datetime) -> bool:
    at = cube.governance.lifespan.expires_at
    return at is not None and at <= now


__all__ = ["Retriever", "TimeWindow", "fuse", "rrf", "time_window"]
