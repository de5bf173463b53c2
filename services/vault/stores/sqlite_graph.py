"""GraphStore on SQLite: the embedded default (stdlib sqlite3, WAL, FTS5 + numpy).

One connection, guarded by a re-entrant lock, serves every thread (FastAPI's
threadpool, the outbox relay). SQLite serialises writers anyway, and one
connection lets the vector cache be updated in the same critical section as the
commit it mirrors, so a search never sees a cache that disagrees with the rows.
Vector math runs outside the lock.

Another process writing the same file (a CLI next to a server) is noticed
through ``PRAGMA data_version``; the vector cache is then dropped and reloaded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import numpy as np

from services.vault.stores import sqlite_access as access
from services.vault.stores import sqlite_compliance as compliance
from services.vault.stores import sqlite_erasure as erasure
from services.vault.stores import sqlite_records as records
from services.vault.stores.sqlite_keywords import KeywordCache, KeywordRow, build_space, tokenize
from services.vault.stores.sqlite_query import (
    epoch,
    filter_sql,
    has_row_filters,
    qmarks,
    query_terms,
    scope_sql,
)
from services.vault.stores.sqlite_schema import connect, migrate
from services.vault.stores.sqlite_vectors import (
    ORIGIN_CODES,
    SEMANTIC_CODES,
    ColumnFilter,
    NamespaceVectors,
    VectorCache,
    search_snapshots,
)
from services.vault.stores.sqlite_write import prepare, write_batch
from shared.errors import ConfigError, Conflict, Unavailable
from shared.ports.graph import OutboxItem, Scored, WriteBatch
from shared.schemas.api import ApiKeyRecord, NamespaceRecord, SearchFilters, TenantRecord
from shared.schemas.compliance import ExportRecord
from shared.schemas.erasure import ErasureReport, ErasureSubject
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import Edge, MemCube
from shared.settings import GraphSettings

_CHUNK = 500  # ids per IN (...) list
_KEEP_ACKED = 10_000  # acknowledged outbox rows kept for inspection


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/path``, ``sqlite:////abs/path`` or ``sqlite://`` (in memory)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        raise ConfigError(f"not a sqlite URL: {url!r}")
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ConfigError(f"sqlite URL must look like sqlite:///path (no host): {url!r}")
    return rest[1:]


class SqliteGraphStore:
    def __init__(self, path: str, dimension: int) -> None:
        if dimension < 1:
            raise ConfigError(f"embedding dimension must be positive, got {dimension}")
        self.path = path
        self.dimension = dimension
        self._lock = threading.RLock()
        self._vectors = VectorCache(dimension)
        self._keywords = KeywordCache()
        try:
            conn = connect(path)
            migrate(conn, dimension)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open graph database {path!r}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        self._data_version = self._read_data_version(conn)

    @classmethod
    def from_settings(cls, settings: GraphSettings, dimension: int) -> SqliteGraphStore:
        return cls(sqlite_path(settings.url), dimension)

    # --- plumbing ----------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with driver errors turned into ours."""
        with self._lock:
            if self._conn is None:
                raise Unavailable("graph store is closed")
            try:
                yield self._conn
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"conflicting write: {exc}") from exc
            except sqlite3.Error as exc:
                raise Unavailable(f"graph database error: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (SQLITE_BUSY, disk full), which leaves
                # the transaction open on this shared connection.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _read_data_version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def _sync_external(self, conn: sqlite3.Connection) -> None:
        version = self._read_data_version(conn)
        if version != self._data_version:
            self._data_version = version
            self._vectors.clear()
            self._keywords.clear()

    # --- tenants, namespaces, keys ------------------------------------------------

    def create_tenant(self, tenant: TenantRecord, key: ApiKeyRecord) -> None:
        if key.tenant != tenant.id:
            raise ValueError("the API key must belong to the tenant being created")
        with self._tx() as conn:
            records.insert_tenant(conn, tenant, key)

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        with self._db() as conn:
            return records.get_tenant(conn, tenant_id)

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        with self._db() as conn:
            return records.find_api_key(conn, prefix)

    def create_namespace(self, ns: NamespaceRecord) -> None:
        with self._tx() as conn:
            records.insert_namespace(conn, ns)

    def get_namespace(self, tenant: str, namespace_id: str) -> NamespaceRecord | None:
        with self._db() as conn:
            return records.get_namespace(conn, tenant, namespace_id)

    def list_namespaces(self, tenant: str) -> list[NamespaceRecord]:
        with self._db() as conn:
            return records.list_namespaces(conn, tenant)

    # --- principals, teams, grants, keys (sqlite_access) ---------------------------

    def put_access_doc(self, tenant: str, kind: str, doc_id: str, body: str) -> None:
        with self._tx() as conn:
            access.put_doc(conn, tenant, kind, doc_id, body)

    def get_access_doc(self, tenant: str, kind: str, doc_id: str) -> str | None:
        with self._tx() as conn:  # may create the table: a write
            return access.get_doc(conn, tenant, kind, doc_id)

    def list_access_docs(self, tenant: str, kind: str) -> list[str]:
        with self._tx() as conn:
            return access.list_docs(conn, tenant, kind)

    def delete_access_doc(self, tenant: str, kind: str, doc_id: str) -> bool:
        with self._tx() as conn:
            return access.delete_doc(conn, tenant, kind, doc_id)

    def put_api_key(self, key: ApiKeyRecord) -> None:
        with self._tx() as conn:
            access.put_api_key(conn, key)

    def list_api_keys(self, tenant: str, principal: str) -> list[ApiKeyRecord]:
        with self._db() as conn:
            return access.list_api_keys(conn, tenant, principal)

    # --- namespace policies, retention, exports (sqlite_compliance) ---------------

    def update_namespace(self, ns: NamespaceRecord) -> bool:
        with self._tx() as conn:
            return compliance.update_namespace(conn, ns)

    def namespaces_with_retention(self) -> list[NamespaceRecord]:
        with self._db() as conn:
            return compliance.namespaces_with_retention(conn)

    def namespace_cubes(
        self,
        tenant: str,
        namespace: str,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[MemCube]:
        before = None if created_before is None else created_before.timestamp()
        with self._db() as conn:
            return compliance.namespace_cubes(conn, tenant, namespace, before, limit)

    def insert_export(self, record: ExportRecord) -> None:
        with self._tx() as conn:
            compliance.insert_export(conn, record)

    def get_export(self, tenant: str, export_id: str) -> ExportRecord | None:
        with self._tx() as conn:  # may create the table: a write
            return compliance.get_export(conn, tenant, export_id)

    # --- writes --------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        """One transaction: supersede, insert versions, index them, edges, outbox."""
        prepared = prepare(batch.cubes, self.dimension)
        with self._lock:
            with self._tx() as conn:
                removed, added, words = write_batch(conn, batch, prepared)
            # Still under the lock: the caches change before anyone can read the rows.
            self._vectors.apply(removed, added)
            self._keywords.apply(removed, words)

    # --- right to erasure (sqlite_erasure) -----------------------------------------

    def erasure_candidates(
        self, tenant: str, namespaces: Sequence[str], subject: ErasureSubject
    ) -> list[str]:
        with self._db() as conn:
            return erasure.candidates(conn, tenant, namespaces, subject)

    def erase(
        self,
        tenant: str,
        cube_ids: Sequence[str],
        batch: WriteBatch,
        now: datetime,
        report: ErasureReport,
    ) -> int:
        prepared = prepare(batch.cubes, self.dimension)
        with self._lock:
            with self._db() as conn:
                erasure.secure(conn, True)
            try:
                with self._tx() as conn:
                    removed, added, words = write_batch(conn, batch, prepared)
                    purged = erasure.purge(conn, tenant, cube_ids, now, report)
            finally:
                with self._db() as conn:
                    erasure.secure(conn, False)
            with self._db() as conn:
                erasure.checkpoint(conn)
            gone = removed | set(cube_ids)
            self._vectors.apply(gone, added)
            self._keywords.apply(gone, words)
        return purged

    def get_erasure(self, tenant: str, erasure_id: str) -> ErasureReport | None:
        with self._db() as conn:
            return erasure.get_report(conn, tenant, erasure_id)

    # --- reads ---------------------------------------------------------------------

    def get_cube(self, tenant: str, cube_id: str, version: int | None = None) -> MemCube | None:
        with self._db() as conn:
            if version is None:
                row = conn.execute(
                    "SELECT json FROM cubes WHERE tenant = ? AND id = ? AND is_current = 1",
                    (tenant, cube_id),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT json FROM cubes WHERE tenant = ? AND id = ? AND version = ?",
                    (tenant, cube_id, version),
                ).fetchone()
        return None if row is None else MemCube.model_validate_json(row[0])

    def get_current(self, tenant: str, cube_ids: Sequence[str]) -> list[MemCube]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(cube_ids))
        with self._db() as conn:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                found.update(
                    conn.execute(
                        f"SELECT id, json FROM cubes WHERE tenant = ? AND is_current = 1"
                        f" AND id IN ({qmarks(len(chunk))})",
                        (tenant, *chunk),
                    ).fetchall()
                )
        return [MemCube.model_validate_json(found[cid]) for cid in cube_ids if cid in found]

    def get_embedding(
        self, tenant: str, cube_id: str, version: int | None = None
    ) -> np.ndarray | None:
        with self._db() as conn:
            if version is None:
                row = conn.execute(
                    "SELECT embedding FROM cubes WHERE tenant = ? AND id = ? AND is_current = 1",
                    (tenant, cube_id),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT embedding FROM cubes WHERE tenant = ? AND id = ? AND version = ?",
                    (tenant, cube_id, version),
                ).fetchone()
        if row is None or row[0] is None:
            return None
        return np.frombuffer(row[0], dtype=np.float32).copy()

    def history(self, tenant: str, cube_id: str) -> list[MemCube]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT json FROM cubes WHERE tenant = ? AND id = ? ORDER BY version",
                (tenant, cube_id),
            ).fetchall()
        return [MemCube.model_validate_json(r[0]) for r in rows]

    def edges(self, tenant: str, ref_prefix: str) -> list[Edge]:
        with self._db() as conn:
            return records.edges(conn, tenant, ref_prefix)

    # --- search --------------------------------------------------------------------

    def vector_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        vector: np.ndarray,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]:
        if k <= 0 or not namespaces:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, expected {self.dimension}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0:
            return []
        q = q / norm
        spaces = list(dict.fromkeys(namespaces))
        with self._db() as conn:
            self._sync_external(conn)
            for ns in spaces:
                if not self._vectors.is_loaded(tenant, ns):
                    space = self._load_space(conn, tenant, ns)
                    if space is not None:
                        self._vectors.install(tenant, ns, space)
            allowed = _allowed_rids(conn, tenant, spaces, filters)
            snaps = self._vectors.snapshots(tenant, spaces)
        hits = search_snapshots(snaps, q, k, _column_filter(filters, allowed))
        return [Scored(cid, score) for cid, score in hits]

    def _load_space(
        self, conn: sqlite3.Connection, tenant: str, namespace: str
    ) -> NamespaceVectors | None:
        rows = conn.execute(
            "SELECT rid, id, semantic_type, origin, event_time, embedding FROM cubes"
            " WHERE tenant = ? AND namespace = ? AND is_current = 1 AND searchable = 1"
            " AND embedding IS NOT NULL ORDER BY rid",
            (tenant, namespace),
        ).fetchall()
        if not rows:
            # Not cached: an unknown namespace name must not cost memory per guess.
            return None
        n = len(rows)
        mat = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32)
        return NamespaceVectors(
            self.dimension,
            np.fromiter((r[0] for r in rows), np.int64, n),
            [r[1] for r in rows],
            mat.reshape(n, self.dimension),
            np.fromiter((SEMANTIC_CODES.get(r[2], -1) for r in rows), np.int8, n),
            np.fromiter((ORIGIN_CODES.get(r[3], -1) for r in rows), np.int8, n),
            np.fromiter((np.nan if r[4] is None else r[4] for r in rows), np.float64, n),
        )

    def text_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        query: str,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]:
        # Each query word stemmed as FTS5 would; no dedup after stemming, as FTS5
        # sums one BM25 term per OR-ed phrase.
        terms = [t for w in query_terms(query) for t in tokenize(w)]
        if not terms or k <= 0 or not namespaces:
            return []
        spaces = list(dict.fromkeys(namespaces))
        with self._db() as conn:
            self._sync_external(conn)
            for ns in spaces:
                if not self._keywords.is_loaded(tenant, ns):
                    rows = self._keyword_rows(conn, tenant, ns)
                    if rows:  # an unknown namespace must not cost memory per guess
                        self._keywords.install(tenant, ns, build_space(rows))
            allowed = _allowed_rids(conn, tenant, spaces, filters)
        # Outside the store lock: the keyword cache has its own, so a query does
        # not hold up the vector search running beside it.
        hits = self._keywords.search(tenant, spaces, terms, k, _column_filter(filters, allowed))
        return [Scored(cid, score) for cid, score in hits]

    @staticmethod
    def _keyword_rows(conn: sqlite3.Connection, tenant: str, namespace: str) -> list[KeywordRow]:
        cur = conn.execute(
            "SELECT c.rid, c.id, c.semantic_type, c.origin, c.event_time, f.text"
            " FROM cubes c JOIN cube_fts f ON f.rowid = c.rid"
            " WHERE c.tenant = ? AND c.namespace = ? AND c.is_current = 1 AND c.searchable = 1"
            " ORDER BY c.rid",
            (tenant, namespace),
        )
        return [
            KeywordRow(
                rid,
                cid,
                tenant,
                namespace,
                text,
                SEMANTIC_CODES.get(sem, -1),
                ORIGIN_CODES.get(origin, -1),
                np.nan if etime is None else etime,
            )
            for rid, cid, sem, origin, etime, text in cur
        ]

    def due_for_expiry(self, now: datetime, limit: int = 1000) -> list[MemCube]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT json FROM cubes WHERE is_current = 1 AND searchable = 1"
                " AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, rid LIMIT ?",
                (now.timestamp(), limit),
            ).fetchall()
        return [MemCube.model_validate_json(r[0]) for r in rows]

    # --- outbox ----------------------------------------------------------------------

    def outbox_pending(self, limit: int = 500) -> list[OutboxItem]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT seq, topic, event FROM outbox WHERE sent = 0 ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxItem(seq, topic, EventEnvelope.model_validate_json(ev)) for seq, topic, ev in rows
        ]

    def outbox_ack(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        now = time.time()
        with self._tx() as conn:
            conn.executemany(
                "UPDATE outbox SET sent = 1, sent_at = ? WHERE seq = ? AND sent = 0",
                [(now, int(s)) for s in seqs],
            )
            conn.execute(
                "DELETE FROM outbox WHERE sent = 1 AND seq <= (SELECT MAX(seq) FROM outbox) - ?",
                (_KEEP_ACKED,),
            )

    # --- health ----------------------------------------------------------------------

    def ping(self) -> None:
        with self._db() as conn:
            conn.execute("SELECT COUNT(*) FROM meta").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
                    self._vectors.clear()
                    self._keywords.clear()


def _allowed_rids(
    conn: sqlite3.Connection, tenant: str, spaces: list[str], filters: SearchFilters | None
) -> np.ndarray | None:
    """Sorted rids passing the filters only SQL can check (tags, metadata); None: no such."""
    if not has_row_filters(filters):
        return None
    scope, params = scope_sql(tenant, spaces)
    fsql, fparams = filter_sql(filters, include_columns=False)
    cur = conn.execute(
        f"SELECT c.rid FROM cubes c WHERE {scope}{fsql} ORDER BY c.rid", [*params, *fparams]
    )
    return np.fromiter((r[0] for r in cur), dtype=np.int64)


def _column_filter(f: SearchFilters | None, allowed: np.ndarray | None) -> ColumnFilter:
    if f is None:
        return ColumnFilter(allowed_rids=allowed)
    return ColumnFilter(
        semantic_types=(
            np.array([SEMANTIC_CODES[str(s)] for s in f.semantic_type], np.int8)
            if f.semantic_type
            else None
        ),
        origins=(np.array([ORIGIN_CODES[str(o)] for o in f.origin], np.int8) if f.origin else None),
        time_from=epoch(f.event_time_from),
        time_to=epoch(f.event_time_to),
        allowed_rids=allowed,
    )
