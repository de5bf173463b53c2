"""The audit log's hash chain: how a record is hashed and how a log is verified.

Every record carries ``prev_hash`` (the ``hash`` of the record before it; 64
zeros for the first) and ``hash`` = sha256 of the record's canonical JSON
without ``hash``. Changing any field of a record breaks its own hash; removing a
record breaks the sequence and the next record's ``prev_hash``; removing the
last records is caught by the head file (``<log>.head``), which the writer
rewrites after every append with the last seq and hash.

hashlib rather than a library: no maintained package keeps a hash-chained
JSON-lines log, and the format (sha256 over sorted-key JSON) must stay readable
by an auditor's own tools without memgrid installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8, ``hash`` left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def head_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".head")


def write_head(log_path: Path, seq: int, last_hash: str, *, fsync: bool = True) -> None:
    """Atomically replaces the head file (write, fsync, rename)."""
    target = head_path(log_path)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"seq": seq, "hash": last_hash}, f)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, target)


def read_head(log_path: Path) -> tuple[int, str] | None:
    try:
        with open(head_path(log_path), encoding="utf-8") as f:
            head = json.load(f)
        return int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return (-1, "")  # an unreadable head cannot vouch for the tail


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    seq: int | None = None  # the first record at fault
    line: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"OK: {self.entries} audit records, hash chain intact"
        where = f"record seq {self.seq}" if self.seq is not None else "the log"
        at = f" (line {self.line})" if self.line is not None else ""
        return f"BROKEN at {where}{at}: {self.reason}"


def verify(log_path: Path) -> VerifyReport:
    """Walks the whole log; reports the first broken link, or ok.

    Reasons: ``changed`` (a record's content no longer matches its hash),
    ``removed`` (a gap in seq, or a prev_hash that is not the previous hash),
    ``reordered``, ``unreadable``, ``head mismatch`` (records missing at the end).
    """
    if not log_path.exists():
        return VerifyReport(False, 0, reason=f"{log_path} does not exist")
    head = read_head(log_path)
    head_seq = head[0] if head is not None else None
    hash_at_head: str | None = None
    expected_seq, prev, count = 1, GENESIS, 0
    with open(log_path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                record = json.loads(raw)
                seq, stored_prev, stored_hash = record["seq"], record["prev_hash"], record["hash"]
            except (ValueError, KeyError, TypeError):
                return VerifyReport(False, count, expected_seq, lineno, "unreadable record")
            if seq != expected_seq:
                if isinstance(seq, int) and seq > expected_seq:
                    missing = (
                        f"{expected_seq}"
                        if seq == expected_seq + 1
                        else f"{expected_seq}-{seq - 1}"
                    )
                    return VerifyReport(
                        False, count, expected_seq, lineno, f"removed: seq {missing} missing"
                    )
                return VerifyReport(False, count, seq, lineno, "reordered or duplicated")
            if record_hash(record) != stored_hash:
                return VerifyReport(False, count, seq, lineno, "changed: content does not match")
            if stored_prev != prev:
                return VerifyReport(
                    False, count, seq, lineno, "removed or replaced: prev_hash breaks the chain"
                )
            if seq == head_seq:
                hash_at_head = stored_hash
            prev, expected_seq, count = stored_hash, expected_seq + 1, count + 1
    if head is None or head_seq is None:
        if count == 0:
            return VerifyReport(True, 0)
        # Without the head, records removed from the end would go unnoticed.
        return VerifyReport(False, count, None, None, "head file missing")
    if head_seq > count or head_seq < 0:
        reason = f"head mismatch: records {count + 1}-{head_seq} removed from the end"
        return VerifyReport(False, count, count + 1, None, reason)
    # A head behind the last record is a crash between the append and the head
    # update (the writer catches up on its next append); a head whose hash is not
    # the chain's at that seq means the chain was rebuilt.
    if hash_at_head != head[1]:
        return VerifyReport(False, count, head_seq, None, "head mismatch: chain rewritten")
    return VerifyReport(True, count)
