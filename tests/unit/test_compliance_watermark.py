"""Export watermarks (shared.compliance.watermark) and ``memgrid compliance watermark``."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main
from shared.compliance import watermark

pytestmark = pytest.mark.unit

LONG = " ".join(f"word{i}" for i in range(200))


@pytest.mark.parametrize("text", ["a", "Ana lives in Lisbon", LONG, "ünïcødé ✓ text"])
def test_embed_strip_decode(text: str) -> None:
    export_id = watermark.new_export_id()
    marked = watermark.embed(text, export_id)
    assert marked != text
    assert watermark.strip(marked) == text  # the visible text is unchanged
    assert watermark.decode(marked) == [export_id]


def test_empty_text_and_unmarked_text() -> None:
    assert watermark.embed("", watermark.new_export_id()) == ""
    assert watermark.decode("no mark here") == []


def test_a_snippet_of_a_long_text_still_carries_the_mark() -> None:
    export_id = watermark.new_export_id()
    marked = watermark.embed(LONG, export_id)
    middle = marked[len(marked) // 2 : len(marked) // 2 + 600]
    assert watermark.decode(middle) == [export_id]
    assert watermark.strip(middle) in LONG


def test_a_damaged_mark_names_no_export() -> None:
    export_id = watermark.new_export_id()
    marked = watermark.embed("hello", export_id)
    i = marked.index(watermark.ZERO)
    flipped = marked[:i] + watermark.ONE + marked[i + 1 :]
    assert watermark.decode(flipped) == []


def test_two_exports_in_one_leak() -> None:
    a, b = watermark.new_export_id(), watermark.new_export_id()
    leak = watermark.embed("first", a) + "\n" + watermark.embed("second", b)
    assert watermark.decode(leak) == [a, b]


def test_bad_export_id_is_refused() -> None:
    with pytest.raises(ValueError):
        watermark.mark("not-an-export")


def test_cli_decodes_a_leaked_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_id = watermark.new_export_id()
    leak = tmp_path / "leak.txt"
    leak.write_text("copied: " + watermark.embed("Ana lives in Lisbon", export_id), "utf-8")
    assert main(["compliance", "watermark", str(leak)]) == 0
    assert capsys.readouterr().out.split() == [export_id]
    assert main(["compliance", "watermark", "--json", str(leak)]) == 0
    assert capsys.readouterr().out.strip() == f'{{"export_ids": ["{export_id}"]}}'
    clean = tmp_path / "clean.txt"
    clean.write_text(watermark.strip(leak.read_text("utf-8")), "utf-8")
    assert main(["compliance", "watermark", str(clean)]) == 1
    assert main(["compliance", "watermark", str(tmp_path / "missing.txt")]) == 2
