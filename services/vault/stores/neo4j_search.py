"""Vector and keyword search on Neo4j: transaction functions and their strategy.

Vector search. Neo4j 5.26's vector index (HNSW over every tenant's searchable
cubes) cannot filter before it searches, so a query for one tenant's namespaces
is answered one of two ways, chosen per query:

* **Exact scan** when the namespaces are small: a bounded count (``LIMIT
  SCAN_MAX + 1`` over the (tenant, namespace, is_current) index, so it never
  reads more than SCAN_MAX + 1 index entries) says how many current, searchable
  vectors the caller's namespaces hold; if at most SCAN_MAX, those passing the
  filters are scored with ``vector.similarity.cosine``. Results equal brute force.
* **Index with over-fetch** otherwise: ask ``db.index.vector.queryNodes`` for
  k' neighbours, keep those that pass the tenant, namespace, state and filter
  conditions and rescore them exactly (the index's own scores come from
  quantised vectors). k' is the beam width of the HNSW search, and its cost
  grows with it (about 10 ms at k'=10, 25 ms at 100, 45 ms at 264 on 144k
  vectors here), so k' comes from the pass rate seen by the previous search of
  the same scope and filters (1.2 k / rate + 16), or 2k the first time. While
  fewer than k survive and the index returned all k' it was asked for, ask
  again for enough at the pass rate seen (at least twice as many). Past
  INDEX_MAX so few candidates pass (a selective filter, or a tenant that is a
  small share of a large shared index) that a scan of the namespaces is
  cheaper, and exact. Results of the index path are
  approximate (HNSW recall, measured by the benchmark); scores are exact cosines.

A namespace large enough to have its own index (neo4j_shards) is searched in
that index, where nearly every neighbour passes, so k' stays close to k; the
caller's other namespaces go through the shared index as above, and the lists
are merged by score.

Neo4j's cosine scores are (1 + cos) / 2; the port promises cosine, so they are
mapped back with 2s - 1.

Keyword search. The full-text index holds ``index_text`` and ``scope`` (hashed
namespace and tenant tokens) of current, searchable cubes only. The Lucene
query requires one of the caller's scope tokens with a boost of 0, so other
tenants' matches never crowd the top hits out and BM25 scores are unchanged.
Cypher then re-checks tenant, namespace, state and filters (the authority; the
tokens are only a pre-filter). Without filters one round of k suffices; with
filters the limit grows with the pass rate seen until k survive or every match
was ranked.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

from neo4j import ManagedTransaction

from services.vault.stores.neo4j_queries import scope_cypher
from services.vault.stores.neo4j_schema import CUBE, TEXT_INDEX, vector_index, vector_label
from services.vault.stores.neo4j_shards import READY, shard_index, shards_of

# Scoring a node in Cypher costs ~20 us (reading its float32[384]), so a scan of
# SCAN_MAX nodes costs about one vector-index query at 100k vectors.
SCAN_MAX = 1024  # namespaces with at most this many searchable vectors are scanned
INDEX_MAX = 16_384  # largest k' asked of the vector index before falling back to a scan
TEXT_FIRST_ROUND = 256  # keyword candidates ranked in the first round when filters apply
TEXT_LAST_ROUND = 32_768  # past this, rank every match at once


def _cos(score: float) -> float:
    return 2.0 * float(score) - 1.0


def first_round(k: int, pass_rate: float | None) -> int:
    """How many neighbours to ask the index for first.

    HNSW cost grows with the number asked (it is the search's beam width), so
    the store remembers the share of index hits that passed for the same scope
    and filters last time and asks for just enough, with a margin; without
    history, twice k.
    """
    if pass_rate is None:
        return max(2 * k, k + 64)
    return max(k + 16, math.ceil(1.2 * k / max(pass_rate, 1e-6)) + 16)


def vector_search_tx(
    tx: ManagedTransaction,
    params: dict[str, Any],
    where: str,
    k: int,
    dimension: int,
    rates: RateMemo,
    rate_key: str,
) -> list[tuple[str, float]]:
    """Top ``k`` over the caller's namespaces.

    ``params`` holds tenant, namespaces, vector and the filters' parameters;
    ``where`` is the filters' Cypher (`` AND ...`` on ``c``, or empty). Namespaces
    with their own index (neo4j_shards) are searched there, one query each; the
    rest in the shared index; the lists are merged by score. ``rates`` remembers
    the pass rate per index and scope under keys built from ``rate_key``.
    """
    namespaces: list[str] = params["namespaces"]
    shards = shards_of(tx, params["tenant"], namespaces)
    hits: dict[str, float] = {}

    def add(found: list[tuple[str, float]]) -> None:
        for cube_id, score in found:
            if score > hits.get(cube_id, -2.0):
                hits[cube_id] = score

    for ns, (label, _state) in shards.items():
        one = {**params, "namespaces": [ns]}
        key = f"{rate_key}|{label}"
        found, rate = _index_search(
            tx,
            one,
            f"{scope_cypher('c')} AND c:{label}{where}",
            k,
            shard_index(label),
            rates.get(key),
        )
        if rate is not None:
            rates.put(key, rate)
        add(found)
    # Still in the shared index: unsharded namespaces, and what a move has not reached.
    rest = [ns for ns in namespaces if shards.get(ns, ("", ""))[1] != READY]
    if rest:
        key = f"{rate_key}|{vector_label(dimension)}"
        found, rate = _shared_search(
            tx, {**params, "namespaces": rest}, where, k, dimension, rates.get(key)
        )
        if rate is not None:
            rates.put(key, rate)
        add(found)
    return sorted(hits.items(), key=lambda h: (-h[1], h[0]))[:k]


def _shared_search(
    tx: ManagedTransaction,
    params: dict[str, Any],
    where: str,
    k: int,
    dimension: int,
    pass_rate: float | None,
) -> tuple[list[tuple[str, float]], float | None]:
    """Exact scan of small namespaces, else the shared index with over-fetch;
    returns the hits and the pass rate observed in the index (None if unused)."""
    scope = f"{scope_cypher('c')} AND c:{vector_label(dimension)}"
    # The count ignores the filters on purpose: with them, a selective filter on a
    # large namespace would make this bounded count read every node.
    count = tx.run(
        f"MATCH (c:{CUBE}) WHERE {scope} WITH c LIMIT $cap RETURN count(c) AS n",
        params,
        cap=SCAN_MAX + 1,
    ).single()
    n = 0 if count is None else int(count["n"])
    if n == 0:
        return [], None
    if n <= SCAN_MAX:
        return _scan(tx, params, scope + where, k), None
    return _index_search(tx, params, scope + where, k, vector_index(dimension), pass_rate)


def _index_search(
    tx: ManagedTransaction,
    params: dict[str, Any],
    cond: str,
    k: int,
    index: str,
    pass_rate: float | None,
) -> tuple[list[tuple[str, float]], float | None]:
    """Over-fetch from ``index`` until ``k`` candidates pass ``cond`` (or a scan is cheaper)."""
    kk = first_round(k, pass_rate)
    rate: float | None = None
    while kk <= INDEX_MAX:
        row = tx.run(
            "CALL db.index.vector.queryNodes($index, $kk, $vector) YIELD node"
            " WITH collect(node) AS found"
            f" RETURN size(found) AS fetched, [c IN found WHERE {cond}"
            " | [c.id, vector.similarity.cosine(c.embedding, $vector)]] AS hits",
            params,
            index=index,
            kk=kk,
        ).single()
        if row is None:
            return [], rate
        fetched = int(row["fetched"])
        hits = sorted(((h[0], _cos(h[1])) for h in row["hits"]), key=lambda h: -h[1])
        if fetched:
            rate = len(hits) / fetched
        if len(hits) >= k or fetched < kk:
            return hits[:k], rate
        kk = next_round(kk, k, fetched, len(hits))
    # So few pass that the index would have to return most of itself.
    return _scan(tx, params, cond, k), rate


def next_round(asked: int, k: int, fetched: int, kept: int) -> int:
    """The next candidate count: enough for ``k`` at the pass rate seen so far, with
    a margin, and at least twice the last one (the rate is an estimate)."""
    rate = max(kept, 1) / max(fetched, 1)
    return max(2 * asked, math.ceil(1.5 * k / rate))


def _scan(
    tx: ManagedTransaction, params: dict[str, Any], cond: str, k: int
) -> list[tuple[str, float]]:
    rows = tx.run(
        f"MATCH (c:{CUBE}) WHERE {cond}"
        " WITH c.id AS id, vector.similarity.cosine(c.embedding, $vector) AS s"
        " ORDER BY s DESC, id LIMIT $k RETURN id, s",
        params,
        k=k,
    )
    return [(r["id"], _cos(r["s"])) for r in rows]


def text_search_tx(
    tx: ManagedTransaction, params: dict[str, Any], where: str, k: int
) -> list[tuple[str, float]]:
    """``params`` holds tenant, namespaces, the Lucene ``query`` and filter parameters;
    ``where`` is the filters' Cypher on ``x.c`` (the node of a ranked hit ``x``)."""
    # score > 0: a document matching only the (zero-boosted) scope clause is no match;
    # it can only happen if the analyser drops every word of the query.
    keep = f"x.s > 0 AND {scope_cypher('x.c')}{where}"
    ranked = (
        " WITH collect({c: node, s: score}) AS found"
        f" RETURN size(found) AS fetched, [x IN found WHERE {keep} | [x.c.id, x.s]] AS hits"
    )
    limit: int | None = k if not where else max(TEXT_FIRST_ROUND, 4 * k)
    while True:
        if limit is None:
            call = "CALL db.index.fulltext.queryNodes($index, $query) YIELD node, score"
            row = tx.run(call + ranked, params, index=TEXT_INDEX).single()
        else:
            call = (
                "CALL db.index.fulltext.queryNodes($index, $query, {limit: $limit})"
                " YIELD node, score"
            )
            row = tx.run(call + ranked, params, index=TEXT_INDEX, limit=limit).single()
        if row is None:
            return []
        hits = [(h[0], float(h[1])) for h in row["hits"]]
        fetched = int(row["fetched"])
        if len(hits) >= k or limit is None or fetched < limit:
            return hits[:k]
        limit = next_round(limit, k, fetched, len(hits))
        if limit > TEXT_LAST_ROUND:
            limit = None


class RateMemo:
    """Share of vector-index hits that passed, per search scope; small and bounded.

    An estimate only: a wrong value costs one more index round, never a wrong
    result. Guarded by a lock because FastAPI runs searches on many threads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._rates: OrderedDict[str, float] = OrderedDict()

    def get(self, key: str) -> float | None:
        with self._lock:
            rate = self._rates.get(key)
            if rate is not None:
                self._rates.move_to_end(key)
            return rate

    def put(self, key: str, rate: float) -> None:
        with self._lock:
            old = self._rates.get(key)
            # Smoothed, so one odd query does not swing the next one's k'.
            self._rates[key] = rate if old is None else (old + rate) / 2
            self._rates.move_to_end(key)
            while len(self._rates) > self._size:
                self._rates.popitem(last=False)
