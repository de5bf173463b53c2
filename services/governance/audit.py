"""The audit log: an append-only JSON-lines file with one line per event id.

Plain Python (no faust), so an embedded-mode subscriber can use it as well.
Each line is ``{"seq", "event_id", "topic", "tenant", "recorded_at", "event",
"prev_hash", "hash"}`` where ``event`` is the CloudEvents envelope as published
and ``seq`` numbers lines from 1. ``prev_hash``/``hash`` chain the records
(services.governance.chain): ``memgrid audit verify`` names the first record
that was changed or removed.

Delivery is at least once, so the same event can arrive twice (a redelivery
after a crash, or the vault's outbox publishing an event again): the log keeps
the ids it holds in memory, loaded from the file at start, and skips them.

A crash can leave a half-written last line. Opening the log cuts it off: the
batch it belonged to was not acknowledged, so it is delivered again. Any other
unreadable line is an error: an audit log is never rewritten silently.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.governance.chain import GENESIS, record_hash, write_head
from shared.ports.bus import EventBus, Subscription
from shared.schemas.events import EventEnvelope
from shared.settings import Settings
from shared.topics import FACT_TOPICS


def audit_path(settings: Settings) -> Path:
    return settings.data_dir / "governance" / "audit.jsonl"


class AuditLogCorrupt(RuntimeError):
    """A line other than a torn last line cannot be read."""


@dataclass(frozen=True)
class AuditEntry:
    topic: str
    event: EventEnvelope


class AuditLog:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._seq = 0
        self._last_hash = GENESIS
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        # A raw descriptor in append mode: every write goes straight to the file,
        # so after a failed write there is no buffered remainder to reason about.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def __len__(self) -> int:
        return self._seq

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            good_end = 0
            for lineno, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break  # torn last line: cut below
                try:
                    entry = json.loads(line)
                    event_id, seq, hashed = entry["event_id"], entry["seq"], entry["hash"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise AuditLogCorrupt(f"{self.path}:{lineno}: unreadable entry: {exc}") from exc
                self._ids.add(event_id)
                self._seq = max(self._seq, int(seq))
                self._last_hash = str(hashed)
                good_end += len(line)
            if good_end < f.seek(0, os.SEEK_END):
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())

    def append(self, entries: Sequence[AuditEntry]) -> int:
        """Appends the entries whose event id is not in the log yet; returns how many.

        Returns once they are written (and fsynced, if ``fsync``): only then may
        the caller acknowledge the events."""
        with self._lock:
            lines: list[bytes] = []
            batch_ids: set[str] = set()
            now = datetime.now(UTC).isoformat()
            seq = self._seq
            prev = self._last_hash
            for entry in entries:
                event_id = entry.event.id
                if event_id in self._ids or event_id in batch_ids:
                    continue
                batch_ids.add(event_id)
                seq += 1
                record: dict[str, Any] = {
                    "seq": seq,
                    "event_id": event_id,
                    "topic": entry.topic,
                    "tenant": entry.event.tenant,
                    "recorded_at": now,
                    "event": entry.event.model_dump(mode="json"),
                    "prev_hash": prev,
                }
                record["hash"] = prev = record_hash(record)
                lines.append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            if not lines:
                return 0
            start = os.fstat(self._fd).st_size
            data = memoryview(b"".join(lines))
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                # Disk full or similar: leave no torn line for the next append
                # to follow; the caller retries the batch.
                os.ftruncate(self._fd, start)
                raise
            # Only a durable write counts: ids are remembered after it succeeded.
            self._ids |= batch_ids
            self._seq = seq
            self._last_hash = prev
            # After the records: a crash in between leaves the head one batch
            # behind, which verify reports; the reverse would hide removals.
            write_head(self.path, seq, prev, fsync=self.fsync)
            return len(lines)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def subscribe_audit(bus: EventBus, log: AuditLog, group: str) -> Subscription:
    """Embedded mode: the audit subscriber on the in-process bus, in its own group,
    on every fact topic (memory.*, erasure.completed, audit.decision)."""

    def append(event: EventEnvelope) -> None:
        log.append([AuditEntry(event.topic, event)])

    return bus.subscribe(group, [spec.name for spec in FACT_TOPICS], append)
