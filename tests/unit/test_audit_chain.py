"""The audit log's hash chain: `memgrid audit verify` names what was changed or removed."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from services.cli import main
from services.governance.audit import AuditEntry, AuditLog
from services.governance.chain import GENESIS, record_hash, verify
from shared.schemas.events import EventEnvelope

pytestmark = pytest.mark.unit


def event(n: int, tenant: str = "t1") -> EventEnvelope:
    return EventEnvelope(
        source="/t", type="io.memgrid.memory.created", tenant=tenant, subject=f"c{n}", data={"n": n}
    )


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    log.append([AuditEntry("memory.created", event(n)) for n in range(1, 4)])
    log.append([AuditEntry("memory.created", event(n)) for n in range(4, 7)])
    log.close()
    return path


def rewrite(path: Path, edit: object) -> None:
    lines = path.read_text().splitlines()
    assert callable(edit)
    edit(lines)
    path.write_text("".join(line + "\n" for line in lines))


def test_records_link_to_the_previous_hash(log_path: Path) -> None:
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert all(r["tenant"] == "t1" for r in records)


def test_an_untouched_log_passes_and_survives_a_reopen(log_path: Path) -> None:
    log = AuditLog(log_path, fsync=False)  # reopening continues the chain
    log.append([AuditEntry("memory.created", event(7))])
    log.close()
    report = verify(log_path)
    assert report.ok and report.entries == 7
    assert main(["audit", "verify", "--path", str(log_path)]) == 0


def test_a_changed_record_is_named(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def change(lines: list[str]) -> None:
        record = json.loads(lines[3])
        record["event"]["data"]["n"] = 99
        lines[3] = json.dumps(record, separators=(",", ":"))

    rewrite(log_path, change)
    report = verify(log_path)
    assert not report.ok and report.seq == 4 and report.line == 4
    assert report.reason.startswith("changed")
    capsys.readouterr()
    assert main(["audit", "verify", "--path", str(log_path)]) == 1
    assert "seq 4" in capsys.readouterr().out


def test_a_rehashed_change_still_breaks_the_next_link(log_path: Path) -> None:
    def forge(lines: list[str]) -> None:  # the forger recomputes the record's own hash
        record = json.loads(lines[1])
        record["topic"] = "memory.forged"
        record["hash"] = record_hash(record)
        lines[1] = json.dumps(record)

    rewrite(log_path, forge)
    report = verify(log_path)
    assert not report.ok and report.seq == 3
    assert "prev_hash" in report.reason


def test_a_removed_middle_record_is_named(log_path: Path) -> None:
    rewrite(log_path, lambda lines: lines.pop(2))
    report = verify(log_path)
    assert not report.ok and report.seq == 3 and report.reason.startswith("removed")


def test_removed_last_records_are_caught_by_the_head(log_path: Path) -> None:
    def drop_tail(lines: list[str]) -> None:
        del lines[-2:]

    rewrite(log_path, drop_tail)
    report = verify(log_path)
    assert not report.ok and "5-6" in report.reason and report.seq == 5


def test_a_missing_head_file_is_reported(log_path: Path) -> None:
    log_path.with_name(log_path.name + ".head").unlink()
    assert not verify(log_path).ok


def test_no_log_exits_2(tmp_path: Path) -> None:
    assert main(["audit", "verify", "--path", str(tmp_path / "none.jsonl")]) == 2
