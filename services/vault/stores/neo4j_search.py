"""Vector and keyword search on Neo4j: transaction functions and their strategy.

Vector search. Neo4j 5.26's vector index (HNSW over every tenant's searchable
cubes) cannot filter before it searches, so a query for one tenant's namespaces
is answered one of two ways, chosen per query:

* **Exact scan** when the filtered candidate set is small: a bounded count
  (``LIMIT SCAN_MAX + 1`` over the (tenant, namespace, is_current) index, so it
  never costs more than SCAN_MAX rows) says how many cubes pass the tenant,
  namespace, current, searchable and filter conditions; at most SCAN_MAX of them
  are scored with ``vector.similarity.cosine``. Results equal brute force.
  Selective filters on a large namespace land here too, which is where
  over-fetching would need the most rounds.
* **Index with over-fetch** otherwise: ask ``db.index.vector.queryNodes`` for
  k' = max(2k, k + 64) neighbours, keep those that pass the conditions and
  rescore them exactly (the index's scores come from quantised vectors); while
  fewer than k survive and the index returned all k' it was asked for, grow k'
  fourfold. Past INDEX_MAX the remaining cost of the index would exceed a scan,
  so the scan (unbounded) answers. Results are approximate (HNSW recall), which
  bench/search_scale.py measures; the scores are exact cosines.

Neo4j's cosine scores are (1 + cos) / 2; the port promises cosine, so they are
mapped back with 2s - 1.

Keyword search. The full-text index holds ``index_text`` and ``scope`` (hashed
namespace and tenant tokens) of current, searchable cubes only. The Lucene
query requires one of the caller's scope tokens with a boost of 0, so other
tenants' matches never crowd the top hits out and BM25 scores are unchanged.
Cypher then re-checks tenant, namespace, state and filters (the authority; the
tokens are only a pre-filter). Without filters one round of k suffices; with
filters the limit grows eightfold until k survive or every match was ranked.
"""

from __future__ import annotations

from typing import Any

from neo4j import ManagedTransaction

from services.vault.stores.neo4j_queries import scope_cypher
from services.vault.stores.neo4j_schema import CUBE, TEXT_INDEX, vector_index, vector_label

SCAN_MAX = 4096  # candidates scored exactly when no more than this many pass the filters
INDEX_MAX = 16_384  # largest k' asked of the vector index before falling back to a scan
TEXT_FIRST_ROUND = 256  # keyword candidates ranked in the first round when filters apply
TEXT_LAST_ROUND = 32_768  # past this, rank every match at once


def _cos(score: float) -> float:
    return 2.0 * float(score) - 1.0


def vector_search_tx(
    tx: ManagedTransaction, params: dict[str, Any], where: str, k: int, dimension: int
) -> list[tuple[str, float]]:
    """``params`` holds tenant, namespaces, vector and the filters' parameters;
    ``where`` is the filters' Cypher (`` AND ...`` on ``c``, or empty)."""
    cond = f"{scope_cypher('c')} AND c:{vector_label(dimension)}{where}"
    count = tx.run(
        f"MATCH (c:{CUBE}) WHERE {cond} WITH c LIMIT $cap RETURN count(c) AS n",
        params,
        cap=SCAN_MAX + 1,
    ).single()
    n = 0 if count is None else int(count["n"])
    if n == 0:
        return []
    if n <= SCAN_MAX:
        return _scan(tx, params, cond, k)
    kk = max(2 * k, k + 64)
    while kk <= INDEX_MAX:
        row = tx.run(
            "CALL db.index.vector.queryNodes($index, $kk, $vector) YIELD node"
            " WITH collect(node) AS found"
            f" RETURN size(found) AS fetched, [c IN found WHERE {cond}"
            " | [c.id, vector.similarity.cosine(c.embedding, $vector)]] AS hits",
            params,
            index=vector_index(dimension),
            kk=kk,
        ).single()
        if row is None:
            return []
        hits = sorted(((h[0], _cos(h[1])) for h in row["hits"]), key=lambda h: -h[1])
        if len(hits) >= k or int(row["fetched"]) < kk:
            return hits[:k]
        kk *= 4
    return _scan(tx, params, cond, k)


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
        if len(hits) >= k or limit is None or int(row["fetched"]) < limit:
            return hits[:k]
        limit = limit * 8 if limit * 8 <= TEXT_LAST_ROUND else None
