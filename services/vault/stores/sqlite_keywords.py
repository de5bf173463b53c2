"""In-memory BM25 of the SQLite store: postings per (tenant, namespace).

Why not FTS5's ``bm25()``: the FTS5 table spans every tenant, so a query over a
large namespace made of frequent words first ranks every match of every tenant
(22 ms p50 at 100k rows on the bench corpus) and its statistics (document
count, document frequencies, average length) mixed tenants — one tenant's
writes shifted another's scores. Here each namespace keeps its own postings
(term -> rows, term frequencies, as numpy arrays) next to the vector matrix and
in step with writes the same way, so a query is a few vectorised gathers and
scatter-adds (about 1 ms at 100k rows) and statistics cover only the namespaces
searched.

The scoring is written here rather than taken from a library because it must be
updated row by row on every commit (bm25s and similar build a static index) and
share the vector cache's row filters. It reproduces FTS5's: k1 = 1.2, b = 0.75,
idf = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6, length = every token of the
text, one summand per query term (as FTS5 sums over OR-ed phrases); the text is
tokenised like FTS5's ``porter unicode61`` (letters and digits, case-folded,
diacritics removed, Porter stems from PyStemmer).

The FTS5 table is still written: it stores the indexed text, from which a
namespace's postings are built on its first search.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import Stemmer

from services.vault.stores.sqlite_spaces import SpaceCache
from services.vault.stores.sqlite_vectors import ColumnFilter, column_mask, top_k_indices

log = logging.getLogger(__name__)

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6
COMPACT_MIN_INVALID = 32
COMPACT_FRACTION = 0.25

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_stemmers = threading.local()  # a PyStemmer object must not be shared by threads


def tokenize(text: str) -> list[str]:
    """Tokens as FTS5's ``porter unicode61`` makes them."""
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    stemmer = getattr(_stemmers, "s", None)
    if stemmer is None:
        stemmer = _stemmers.s = Stemmer.Stemmer("porter")
    words: list[str] = stemmer.stemWords(_WORD.findall(text.lower()))
    return words


@dataclass(frozen=True)
class KeywordRow:
    rid: int
    cube_id: str
    tenant: str
    namespace: str
    text: str
    semantic_type: int
    origin: int
    event_time: float  # NaN when unknown


class KeywordSpace:
    """The keyword-searchable rows of one (tenant, namespace), in increasing rid order."""

    def __init__(self) -> None:
        self.n = 0
        self.invalid = 0
        self.total_len = 0.0  # tokens over valid rows
        self._alloc(64)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._vocab: dict[str, int] = {}
        # Per term id: chunks of rows and of term frequencies, one chunk per append;
        # merged into one array on first read.
        self._rows: list[list[np.ndarray]] = []
        self._tfs: list[list[np.ndarray]] = []

    def _alloc(self, cap: int) -> None:
        self._rids = np.empty(cap, dtype=np.int64)
        self._sem = np.empty(cap, dtype=np.int8)
        self._origin = np.empty(cap, dtype=np.int8)
        self._etime = np.empty(cap, dtype=np.float64)
        self._valid = np.ones(cap, dtype=bool)
        self._len = np.empty(cap, dtype=np.float32)

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self._rids, self._sem, self._origin, self._etime, self._valid, self._len

    def _reallocate(self, cap: int, keep: np.ndarray | slice) -> None:
        old = [c[keep] for c in self._columns()]
        self._alloc(cap)
        for new, values in zip(self._columns(), old, strict=True):
            new[: len(values)] = values

    @property
    def live(self) -> int:
        return self.n - self.invalid

    def append(self, rows: Sequence[KeywordRow]) -> None:
        if not rows:
            return
        need = self.n + len(rows)
        if need > len(self._rids):
            self._reallocate(max(need, len(self._rids) * 3 // 2 + 64), slice(0, self.n))
        base = self.n
        batch_rows: dict[int, list[int]] = defaultdict(list)
        batch_tfs: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            self.discard((row.cube_id,))  # a new version replaces its old row
            at = base + i
            tokens = tokenize(row.text)
            self._rids[at] = row.rid
            self._sem[at] = row.semantic_type
            self._origin[at] = row.origin
            self._etime[at] = row.event_time
            self._valid[at] = True
            self._len[at] = len(tokens)
            self.total_len += len(tokens)
            self._row_of[row.cube_id] = at
            self._ids.append(row.cube_id)
            for term, tf in Counter(tokens).items():
                tid = self._vocab.get(term)
                if tid is None:
                    tid = self._vocab[term] = len(self._rows)
                    self._rows.append([])
                    self._tfs.append([])
                batch_rows[tid].append(at)
                batch_tfs[tid].append(tf)
        for tid, rs in batch_rows.items():
            self._rows[tid].append(np.array(rs, dtype=np.int32))
            self._tfs[tid].append(np.array(batch_tfs[tid], dtype=np.float32))
        self.n = need

    def discard(self, cube_ids: Iterable[str]) -> None:
        for cid in cube_ids:
            row = self._row_of.pop(cid, None)
            if row is not None:
                self._valid[row] = False
                self.total_len -= float(self._len[row])
                self.invalid += 1

    def maybe_compact(self) -> None:
        if self.invalid < max(COMPACT_MIN_INVALID, self.n * COMPACT_FRACTION):
            return
        keep = np.flatnonzero(self._valid[: self.n])
        new_pos = np.full(self.n, -1, dtype=np.int32)
        new_pos[keep] = np.arange(keep.size, dtype=np.int32)
        for tid in range(len(self._rows)):
            rows, tfs = self.postings(tid)
            moved = new_pos[rows]
            stay = moved >= 0
            self._rows[tid] = [moved[stay]]
            self._tfs[tid] = [tfs[stay]]
        self._reallocate(max(64, keep.size + keep.size // 8), keep)
        self._ids = [self._ids[i] for i in keep]
        self._row_of = {cid: i for i, cid in enumerate(self._ids)}
        self.n = int(keep.size)
        self.invalid = 0

    def postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        rows, tfs = self._rows[tid], self._tfs[tid]
        if len(rows) != 1:
            merged_rows = np.concatenate(rows) if rows else np.empty(0, np.int32)
            merged_tfs = np.concatenate(tfs) if tfs else np.empty(0, np.float32)
            self._rows[tid], self._tfs[tid] = [merged_rows], [merged_tfs]
        return self._rows[tid][0], self._tfs[tid][0]

    def term_postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        tid = self._vocab.get(term)
        return None if tid is None else self.postings(tid)

    def doc_freq(self, postings: tuple[np.ndarray, np.ndarray] | None) -> int:
        if postings is None:
            return 0
        rows = postings[0]
        return int(rows.size) if not self.invalid else int(self._valid[rows].sum())

    def mask(self, f: ColumnFilter) -> np.ndarray | None:
        n = self.n
        valid = self._valid[:n] if self.invalid else None
        return column_mask(
            n, valid, self._rids[:n], self._sem[:n], self._origin[:n], self._etime[:n], f
        )

    def score(
        self,
        postings: Sequence[tuple[np.ndarray, np.ndarray] | None],
        idf: Sequence[float],
        avgdl: float,
        k: int,
        f: ColumnFilter,
    ) -> list[tuple[str, float]]:
        """Top ``k`` rows by BM25 over the given terms' postings."""
        mask = self.mask(f)
        acc = np.zeros(self.n, dtype=np.float64)
        hit = np.zeros(self.n, dtype=bool)
        norm = K1 * (1 - B + B * self._len[: self.n] / avgdl)
        for post, w in zip(postings, idf, strict=True):
            if post is None:
                continue
            rows, tf = post
            if mask is not None:
                keep = mask[rows]
                rows, tf = rows[keep], tf[keep]
            # Rows are unique within one term's postings, so += does not lose adds.
            acc[rows] += w * tf * (K1 + 1) / (tf + norm[rows])
            hit[rows] = True
        cand = np.flatnonzero(hit)
        if cand.size == 0:
            return []
        scores = acc[cand]
        return [(self._ids[int(cand[i])], float(scores[i])) for i in top_k_indices(scores, k)]


class KeywordCache(SpaceCache[KeywordSpace, KeywordRow]):
    """Every loaded (tenant, namespace) keyword space; loaded lazily on first search."""

    def search(
        self, tenant: str, namespaces: Sequence[str], terms: Sequence[str], k: int, f: ColumnFilter
    ) -> list[tuple[str, float]]:
        """BM25 top ``k`` over the namespaces, with statistics over all of them.

        Runs under the cache lock (a few ms): postings are appended in place by
        writers, so the lock is what keeps a query from seeing half a commit.
        """
        with self._lock:
            spaces = [
                self._spaces[(tenant, ns)] for ns in namespaces if (tenant, ns) in self._spaces
            ]
            docs = sum(s.live for s in spaces)
            if not docs or not terms or k <= 0:
                return []
            avgdl = max(sum(s.total_len for s in spaces) / docs, 1e-9)
            per_space = [[s.term_postings(t) for t in terms] for s in spaces]
            idf = []
            for j in range(len(terms)):
                df = sum(s.doc_freq(p[j]) for s, p in zip(spaces, per_space, strict=True))
                idf.append(max(math.log((docs - df + 0.5) / (df + 0.5)), MIN_IDF))
            hits: list[tuple[str, float]] = []
            for s, p in zip(spaces, per_space, strict=True):
                hits.extend(s.score(p, idf, avgdl, k, f))
        hits.sort(key=lambda h: -h[1])
        return hits[:k]


def build_space(rows: Sequence[KeywordRow], chunk: int = 10_000) -> KeywordSpace:
    """A space from committed rows (rid order), logging progress on large loads."""
    space = KeywordSpace()
    for start in range(0, len(rows), chunk):
        space.append(rows[start : start + chunk])
        if len(rows) > chunk:
            log.info("keyword index: %d/%d rows", min(start + chunk, len(rows)), len(rows))
    return space
