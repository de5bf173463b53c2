"""Hybrid retrieval: dense + keyword + time, fused by weighted reciprocal rank.

Why reciprocal-rank fusion rather than a weighted sum of scores: cosine
similarities and BM25 scores live on unrelated scales that shift with the query
and corpus size, so any fixed mix of raw scores is tuned to one corpus. RRF
(Cormack et al., 2009) only uses ranks, needs no normalisation, and on the LoCoMo
dev split it beat both single signals and min-max-normalised score sums (figures
in docs/benchmarks.md, bench/locomo_recall.py --fusion ...).

The time signal: when the query names a time (a month, a year, an ISO date), the
cubes whose event time falls in that window are ranked by closeness to it and
that list is fused in too; otherwise time contributes nothing, rather than
biasing every query to recent memories.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


class Retriever:
    def __init__(self, store: GraphStore, embedder: Embedder, cfg: SearchSettings) -> None:
        self._store = store
        self._embedder = embedder
        self._cfg = cfg

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
        n = max(self._cfg.candidates, top_k * 3)
        vector = self._embedder.encode([query])[0]
        dense = self._store.vector_search(tenant, namespaces, vector, n, filters)
        keyword = self._store.text_search(tenant, namespaces, query, n, filters)
        lists: list[tuple[float, Sequence[str]]] = [
            (self._cfg.dense_weight, [s.cube_id for s in dense]),
            (self._cfg.keyword_weight, [s.cube_id for s in keyword]),
        ]
        window = time_window(query)
        candidates = {s.cube_id for s in dense} | {s.cube_id for s in keyword}
        cubes = {c.id: c for c in self._store.get_current(tenant, list(candidates))}
        if window is not None:
            lists.append((self._cfg.time_weight, _by_time(cubes.values(), window)))
        fused = rrf(lists, self._cfg.rrf_k)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        out: list[tuple[MemCube, float]] = []
        for cube_id, score in ranked:
            cube = cubes.get(cube_id)
            if cube is None or not cube.searchable or _expired(cube, now):
                continue
            out.append((cube, score))
            if len(out) == top_k:
                break
        return out


def _by_time(cubes: Iterable[MemCube], window: TimeWindow) -> list[str]:
    inside: list[tuple[float, str]] = []
    for cube in cubes:
        t = cube.event_time
        if t is not None and window.start <= t < window.end:
            inside.append((abs((t - window.middle).total_seconds()), cube.id))
    return [cube_id for _, cube_id in sorted(inside)]


def _expired(cube: MemCube, now: datetime) -> bool:
    at = cube.governance.lifespan.expires_at
    return at is not None and at <= now


__all__ = ["Retriever", "Scored", "TimeWindow", "rrf", "time_window"]
