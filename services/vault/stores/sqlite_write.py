"""The write path of the SQLite store: one ``WriteBatch`` inside one transaction.

``prepare`` validates and serialises a cube before the transaction starts, so
the write lock is held only for the inserts. ``write_batch`` runs inside the
caller's transaction and reports what the vector cache must change once it
commits.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import numpy as np

from services.vault.stores import sqlite_records as records
from services.vault.stores.sqlite_keywords import KeywordRow
from services.vault.stores.sqlite_query import epoch, meta_value
from services.vault.stores.sqlite_vectors import ORIGIN_CODES, SEMANTIC_CODES, VectorRow
from shared.errors import Conflict
from shared.ports.graph import CubeWrite, WriteBatch

_INSERT_CUBE = (
    "INSERT INTO cubes (rid, id, version, tenant, namespace, is_current, searchable, state,"
    " tier, event_time, expires_at, semantic_type, origin, json, embedding)"
    " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class Prepared:
    """A cube version turned into column values before the transaction starts."""

    cw: CubeWrite
    searchable: bool
    vector: np.ndarray | None  # normalised; None when it will not be vector-searchable
    text: str | None
    values: tuple[object, ...]  # every column of _INSERT_CUBE after rid


def prepare(writes: list[CubeWrite], dimension: int) -> list[Prepared]:
    """Checks embeddings (shape, finite), normalises them and serialises the cubes.

    The vector work is done on the whole batch at once: per-row numpy calls
    would cost more than the inserts themselves on a 5,000-cube ingest.
    """
    rows = [i for i, cw in enumerate(writes) if cw.embedding is not None]
    vectors: dict[int, np.ndarray] = {}
    if rows:
        flat = [np.asarray(writes[i].embedding, dtype=np.float32).reshape(-1) for i in rows]
        for i, v in zip(rows, flat, strict=True):
            if v.shape[0] != dimension:
                raise ValueError(
                    f"cube {writes[i].cube.id}: embedding has {v.shape[0]} dimensions,"
                    f" expected {dimension}"
                )
        mat = np.stack(flat)
        finite = np.isfinite(mat).all(axis=1)
        if not finite.all():
            bad = writes[rows[int(np.argmin(finite))]].cube.id
            raise ValueError(f"cube {bad}: embedding is not finite")
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        mat /= np.where(norms > 0, norms, 1.0)
        vectors = dict(zip(rows, mat, strict=True))
    return [_prepare_one(cw, vectors.get(i)) for i, cw in enumerate(writes)]


def _prepare_one(cw: CubeWrite, vector: np.ndarray | None) -> Prepared:
    cube = cw.cube
    searchable = cube.searchable
    values = (
        cube.id,
        cube.version,
        cube.tenant,
        cube.namespace,
        int(searchable),
        str(cube.lifecycle.state),
        str(cube.tier),
        epoch(cube.event_time),
        epoch(cube.governance.lifespan.expires_at),
        str(cube.semantic_type),
        str(cube.origin),
        cube.model_dump_json(),
        None if vector is None else vector.tobytes(),
    )
    text = cw.index_text if cw.index_text is not None else cube.text
    return Prepared(cw, searchable, vector if searchable else None, text, values)


def write_batch(
    conn: sqlite3.Connection, batch: WriteBatch, prepared: list[Prepared]
) -> tuple[set[str], list[VectorRow], list[KeywordRow]]:
    """Runs inside a transaction. Returns (cube ids whose cached rows are stale,
    new vector-searchable rows, new keyword-searchable rows)."""
    removed: set[str] = set()
    if batch.superseded:
        conn.executemany(
            "DELETE FROM cube_fts WHERE rowid IN"
            " (SELECT rid FROM cubes WHERE id = ? AND version = ? AND is_current = 1)",
            batch.superseded,
        )
        conn.executemany(
            "UPDATE cubes SET is_current = 0 WHERE id = ? AND version = ?", batch.superseded
        )
        removed.update(cid for cid, _ in batch.superseded)
    _supersede_older(conn, [p for p in prepared if p.cw.cube.version > 1], removed)

    # rids are assigned here, above every rid ever used, so the cache can rely on
    # increasing order and we know them without reading them back.
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(rid) FROM cubes), 0),"
        " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'cubes'), 0))"
    ).fetchone()
    base = int(row[0]) + 1
    conn.executemany(_INSERT_CUBE, [(base + i, *p.values) for i, p in enumerate(prepared)])
    conn.executemany(
        "INSERT INTO cube_fts (rowid, text) VALUES (?, ?)",
        [(base + i, p.text) for i, p in enumerate(prepared) if p.searchable and p.text],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO cube_tags (rid, tag) VALUES (?, ?)",
        [(base + i, tag) for i, p in enumerate(prepared) for tag in p.cw.cube.tags],
    )
    conn.executemany(
        "INSERT INTO cube_meta (rid, key, type, value) VALUES (?, ?, ?, ?)",
        [
            (base + i, key, *typed)
            for i, p in enumerate(prepared)
            for key, value in p.cw.cube.metadata.items()
            if (typed := meta_value(value)) is not None
        ],
    )
    if batch.edges:
        records.insert_edges(conn, batch.edges, {p.cw.cube.id: p.cw.cube.tenant for p in prepared})
    if batch.events:
        now = time.time()
        conn.executemany(
            "INSERT INTO outbox (topic, msg_key, event, created_at) VALUES (?, ?, ?, ?)",
            [(e.topic, e.key, e.model_dump_json(), now) for e in batch.events],
        )
    added: list[VectorRow] = []
    words: list[KeywordRow] = []
    for i, p in enumerate(prepared):
        cube = p.cw.cube
        sem = SEMANTIC_CODES[str(cube.semantic_type)]
        origin = ORIGIN_CODES[str(cube.origin)]
        etime = float("nan") if cube.event_time is None else cube.event_time.timestamp()
        if p.vector is not None:
            added.append(
                VectorRow(
                    base + i, cube.id, cube.tenant, cube.namespace, p.vector, sem, origin, etime
                )
            )
        if p.searchable and p.text:  # the rows cube_fts got above
            words.append(
                KeywordRow(
                    base + i, cube.id, cube.tenant, cube.namespace, p.text, sem, origin, etime
                )
            )
    return removed, added, words


def _supersede_older(conn: sqlite3.Connection, updates: list[Prepared], removed: set[str]) -> None:
    """A new version makes older ones non-current, even if the caller forgot to say so.

    It also refuses a stale version (one at or below the newest stored: two
    concurrent updates of one cube) and a version of an id another tenant owns.
    """
    for p in updates:
        cube = p.cw.cube
        row = conn.execute(
            "SELECT MIN(tenant), MAX(tenant), MAX(version) FROM cubes WHERE id = ?", (cube.id,)
        ).fetchone()
        if row[2] is None:
            continue
        if row[0] != cube.tenant or row[1] != cube.tenant:
            raise Conflict(f"cube {cube.id!r} cannot be written by this tenant")
        if int(row[2]) >= cube.version:
            raise Conflict(
                f"cube {cube.id!r} already has version {row[2]}; cannot write {cube.version}",
                code="version_conflict",
            )
        conn.execute(
            "DELETE FROM cube_fts WHERE rowid IN"
            " (SELECT rid FROM cubes WHERE id = ? AND is_current = 1)",
            (cube.id,),
        )
        conn.execute("UPDATE cubes SET is_current = 0 WHERE id = ? AND is_current = 1", (cube.id,))
        removed.add(cube.id)
