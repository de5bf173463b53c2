"""DDL of the SQLite graph store, and opening a connection with the right pragmas.

Times are stored as UTC epoch seconds (REAL) so range comparisons are numeric and
do not depend on how an ISO string happens to be written. Each record also keeps
its full pydantic JSON, which is what reads return; the typed columns exist only
to filter and index.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.errors import ConfigError

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    json       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    prefix    TEXT PRIMARY KEY,
    key_hash  TEXT NOT NULL,
    tenant    TEXT NOT NULL REFERENCES tenants(id),
    principal TEXT NOT NULL,
    json      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS namespaces (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    json       TEXT NOT NULL,
    UNIQUE (tenant, name)
);

-- One row per cube version. ``rid`` is assigned by the store in increasing order
-- (AUTOINCREMENT never reuses a value), which the vector cache relies on to map
-- row ids to matrix rows with a binary search. (id, version) is the logical key.
CREATE TABLE IF NOT EXISTS cubes (
    rid           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    tenant        TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    is_current    INTEGER NOT NULL,
    searchable    INTEGER NOT NULL,
    state         TEXT NOT NULL,
    tier          TEXT NOT NULL,
    event_time    REAL,
    expires_at    REAL,
    semantic_type TEXT NOT NULL,
    origin        TEXT NOT NULL,
    json          TEXT NOT NULL,
    embedding     BLOB,
    UNIQUE (id, version)
);
CREATE INDEX IF NOT EXISTS cubes_tenant_id ON cubes (tenant, id, version);
CREATE INDEX IF NOT EXISTS cubes_live ON cubes (tenant, namespace, rid)
    WHERE is_current = 1 AND searchable = 1;
CREATE INDEX IF NOT EXISTS cubes_expiry ON cubes (expires_at)
    WHERE is_current = 1 AND searchable = 1 AND expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS cube_tags (
    rid INTEGER NOT NULL REFERENCES cubes(rid),
    tag TEXT NOT NULL,
    PRIMARY KEY (rid, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cube_tags_tag ON cube_tags (tag, rid);

-- Top-level scalar metadata, for equality filters. ``value`` has no declared
-- type, so SQLite keeps 1 and '1' apart; ``type`` keeps True apart from 1.
CREATE TABLE IF NOT EXISTS cube_meta (
    rid   INTEGER NOT NULL REFERENCES cubes(rid),
    key   TEXT NOT NULL,
    type  TEXT NOT NULL,
    value,
    PRIMARY KEY (rid, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cube_meta_kv ON cube_meta (key, value, rid);

CREATE TABLE IF NOT EXISTS edges (
    eid        INTEGER PRIMARY KEY,
    tenant     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    src        TEXT NOT NULL,
    src_id     TEXT NOT NULL,
    dst        TEXT NOT NULL,
    dst_id     TEXT NOT NULL,
    created_at REAL NOT NULL,
    json       TEXT NOT NULL,
    UNIQUE (tenant, kind, src, dst)
);
CREATE INDEX IF NOT EXISTS edges_src ON edges (tenant, src_id);
CREATE INDEX IF NOT EXISTS edges_dst ON edges (tenant, dst_id);

CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    msg_key    TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent       INTEGER NOT NULL DEFAULT 0,
    sent_at    REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE sent = 0;

-- Keyword index over current, searchable versions only; rowid = cubes.rid.
CREATE VIRTUAL TABLE IF NOT EXISTS cube_fts USING fts5 (
    text,
    tokenize = 'porter unicode61'
);
"""


def connect(path: str) -> sqlite3.Connection:
    """Opens (creating if needed) the database in autocommit mode.

    Transactions are begun explicitly (BEGIN IMMEDIATE) so a writer takes the
    write lock up front instead of failing half way with SQLITE_BUSY.
    """
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection, dimension: int) -> None:
    """Creates the schema and pins the embedding dimension.

    Opening a store with another dimension is refused: mixing vectors of two
    embedding models in one index would make every similarity meaningless.
    """
    conn.executescript(DDL)
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("dimension", str(dimension))],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if rows:
        if int(rows.get("schema_version", "0")) > SCHEMA_VERSION:
            raise ConfigError(
                f"graph database has schema version {rows['schema_version']}, "
                f"newer than this memgrid understands ({SCHEMA_VERSION})"
            )
        stored = int(rows.get("dimension", "0"))
        if stored != dimension:
            raise ConfigError(
                f"graph database holds {stored}-dimensional embeddings but the embedder "
                f"produces {dimension}; use a new data directory or re-embed"
            )
