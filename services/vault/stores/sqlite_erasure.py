"""Right to erasure in the SQLite store (docs/compliance.md#right-to-erasure).

``candidates`` finds the plaintext cubes with any version about a subject;
``purge`` runs inside the store's write transaction, after the batch of
tombstones and events, and makes every version of those cubes content-free
(shared.schemas.erasure.content_free): the JSON rewritten, the embedding, the
keyword index row, the tag and metadata rows dropped. Acknowledged outbox rows
about the cubes go too (memory.created carries tags and sources). Reports live
in their own table, written in the same transaction.

``secure_delete`` is on for the erasure's transaction so SQLite overwrites the
freed pages with zeros instead of leaving the erased text readable in the file;
the full-text index is merged and the WAL checkpointed and truncated afterwards,
for the same reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from services.vault.stores.sqlite_query import qmarks
from shared.schemas.erasure import ErasureReport, ErasureSubject, content_free
from shared.schemas.memcube import MemCube

DDL = (
    "CREATE TABLE IF NOT EXISTS erasures ("
    " id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at REAL NOT NULL, json TEXT NOT NULL)"
)
_CHUNK = 500  # ids per IN (...) list, below SQLite's parameter limit


def _fold(value: str | None) -> str | None:
    # SQLite's lower() folds ASCII only; Python's casefold matches ErasureSubject.
    return value.casefold() if isinstance(value, str) else value


def checkpoint(conn: sqlite3.Connection) -> None:
    """Outside a transaction: copies the WAL into the database and truncates it, so
    the frames written before the erasure (which hold the text) are gone too."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def secure(conn: sqlite3.Connection, on: bool) -> None:
    """Outside a transaction. On for the erasure only: zeroing every freed page
    would slow down the ordinary writes (each update deletes index rows)."""
    conn.execute(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")  # a constant, not input


def candidates(
    conn: sqlite3.Connection, tenant: str, namespaces: Sequence[str], subject: ErasureSubject
) -> list[str]:
    """Ids of plaintext cubes (any version) in ``namespaces`` about ``subject``."""
    conn.create_function("memgrid_fold", 1, _fold, deterministic=True)
    spaces = list(dict.fromkeys(namespaces))
    found: dict[str, None] = {}
    for start in range(0, len(spaces), _CHUNK):
        chunk = spaces[start : start + _CHUNK]
        cur = conn.execute(
            "SELECT id, json FROM cubes WHERE tenant = ? AND tier = 'plaintext'"
            f" AND namespace IN ({qmarks(len(chunk))})"
            " AND instr(memgrid_fold(json), ?) > 0 ORDER BY rid",
            (tenant, *chunk, subject.needle()),
        )
        for cube_id, raw in cur:
            if cube_id not in found and subject.matches(MemCube.model_validate_json(raw)):
                found[cube_id] = None
    return list(found)


def purge(
    conn: sqlite3.Connection,
    tenant: str,
    cube_ids: Sequence[str],
    now: datetime,
    report: ErasureReport,
) -> int:
    """Inside the caller's transaction. Returns the versions whose content changed."""
    conn.execute(DDL)
    purged = 0
    unique = list(dict.fromkeys(cube_ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = qmarks(len(chunk))
        rows = conn.execute(
            f"SELECT rid, json FROM cubes WHERE tenant = ? AND id IN ({marks})",
            (tenant, *chunk),
        ).fetchall()
        updates = []
        for rid, raw in rows:
            skeleton = content_free(MemCube.model_validate_json(raw), now).model_dump_json()
            if skeleton != raw:
                purged += 1
            updates.append((skeleton, rid))
        conn.executemany(
            "UPDATE cubes SET json = ?, embedding = NULL, searchable = 0, state = 'deleted',"
            " event_time = NULL, expires_at = NULL WHERE rid = ?",
            updates,
        )
        rids = [(rid,) for _, rid in updates]
        conn.executemany("DELETE FROM cube_fts WHERE rowid = ?", rids)
        conn.executemany("DELETE FROM cube_tags WHERE rid = ?", rids)
        conn.executemany("DELETE FROM cube_meta WHERE rid = ?", rids)
        # Sent events only: pending ones (this batch's among them) still have to go out.
        conn.execute(
            f"DELETE FROM outbox WHERE sent = 1 AND msg_key IN ({marks})",
            chunk,
        )
    if unique:
        # FTS5 (before SQLite 3.44 and its secure-delete option) keeps a deleted
        # row's terms in its index segments until they are merged: merge them now.
        conn.execute("INSERT INTO cube_fts (cube_fts) VALUES ('optimize')")
    conn.execute(
        "INSERT INTO erasures (id, tenant, created_at, json) VALUES (?, ?, ?, ?)",
        (report.id, report.tenant, report.created_at.timestamp(), report.model_dump_json()),
    )
    return purged


def get_report(conn: sqlite3.Connection, tenant: str, erasure_id: str) -> ErasureReport | None:
    conn.execute(DDL)
    row = conn.execute(
        "SELECT json FROM erasures WHERE tenant = ? AND id = ?", (tenant, erasure_id)
    ).fetchone()
    return None if row is None else ErasureReport.model_validate_json(row[0])
