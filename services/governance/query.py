"""Reading the audit log for ``GET /v1/audit``: one tenant's records, filtered.

An index of line offsets per tenant is kept in memory and extended with what was
appended since the last query, so a query reads only its tenant's lines (not the
whole log). The log is append-only, so offsets never move.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.ports.audit import AuditPage, AuditQuery, AuditRecord


class FileAuditReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._consumed = 0
        self._by_tenant: dict[str, list[tuple[int, int]]] = {}  # tenant -> [(seq, offset)]

    def _catch_up(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._consumed)
            offset = self._consumed
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a line being written: read it next time
                try:
                    rec = json.loads(raw)
                    tenant, seq = str(rec.get("tenant") or "-"), int(rec["seq"])
                except (ValueError, KeyError, TypeError):
                    tenant, seq = "-", -1  # verify reports it; queries skip it
                if seq >= 0:
                    self._by_tenant.setdefault(tenant, []).append((seq, offset))
                offset += len(raw)
            self._consumed = offset

    def query(self, tenant: str, q: AuditQuery) -> AuditPage:
        with self._lock:
            self._catch_up()
            entries = [e for e in self._by_tenant.get(tenant, []) if e[0] > q.after]
        records: list[AuditRecord] = []
        last_seq: int | None = None
        with open(self.path, "rb") if entries else _Empty() as f:
            for seq, offset in entries:
                f.seek(offset)
                raw = json.loads(f.readline())
                last_seq = seq
                if raw.get("tenant") != tenant or not _matches(raw, q):
                    continue
                records.append(
                    AuditRecord(
                        seq=seq,
                        hash=raw["hash"],
                        prev_hash=raw["prev_hash"],
                        recorded_at=raw["recorded_at"],
                        topic=raw["topic"],
                        event=raw["event"],
                    )
                )
                if len(records) >= q.limit:
                    break
        more = last_seq is not None and last_seq < entries[-1][0]
        return AuditPage(records=records, next_after=last_seq if more else None)


def _matches(raw: dict[str, Any], q: AuditQuery) -> bool:
    event = raw.get("event") or {}
    data = event.get("data") or {}
    if q.topic is not None and raw.get("topic") != q.topic:
        return False
    if q.principal is not None and data.get("principal") != q.principal:
        return False
    if q.namespace is not None and event.get("namespace") != q.namespace:
        return False
    if q.outcome is not None and data.get("outcome") != q.outcome:
        return False
    if q.since is not None or q.until is not None:
        at = datetime.fromisoformat(str(event.get("time") or raw.get("recorded_at")))
        if q.since is not None and at < q.since:
            return False
        if q.until is not None and at >= q.until:
            return False
    return True


class _Empty:
    def __enter__(self) -> Any:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
