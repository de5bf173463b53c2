"""The governance audit log: one line per event id, durable appends, torn-line repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.governance.audit import AuditEntry, AuditLog, AuditLogCorrupt
from shared.schemas.events import EventEnvelope

pytestmark = pytest.mark.unit


def event(n: int) -> EventEnvelope:
    return EventEnvelope(
        source="/t", type="io.memgrid.memory.created", tenant="t1", subject=f"c{n}", data={"n": n}
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_event_id_across_batches_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    e1, e2, e3 = event(1), event(2), event(3)
    assert log.append([AuditEntry("memory.created", e) for e in (e1, e2, e1)]) == 2
    assert log.append([AuditEntry("memory.created", e2)]) == 0
    log.close()
    reopened = AuditLog(path)
    assert e1.id in reopened and len(reopened) == 2
    assert reopened.append([AuditEntry("memory.created", e) for e in (e2, e3)]) == 1
    reopened.close()
    entries = lines(path)
    assert [e["event_id"] for e in entries] == [e1.id, e2.id, e3.id]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    first = entries[0]["event"]
    assert isinstance(first, dict) and EventEnvelope.model_validate(first) == e1


def test_a_torn_last_line_is_cut_and_its_event_accepted_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    e1, e2 = event(1), event(2)
    log.append([AuditEntry("memory.created", e1)])
    log.close()
    with open(path, "ab") as f:  # a crash in the middle of writing e2's line
        f.write(b'{"seq":2,"event_id":"' + e2.id.encode())
    log = AuditLog(path)
    assert len(log) == 1 and e2.id not in log
    assert log.append([AuditEntry("memory.created", e2)]) == 1
    log.close()
    assert [e["event_id"] for e in lines(path)] == [e1.id, e2.id]


def test_a_corrupt_line_in_the_middle_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(
        '{"seq":1,"event_id":"a","hash":"h"}\nnot json\n{"seq":3,"event_id":"c","hash":"h"}\n'
    )
    with pytest.raises(AuditLogCorrupt, match=":2:"):
        AuditLog(path)
