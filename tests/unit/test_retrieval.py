"""Fusion and query-time parsing of the vault's retriever."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.vault.retrieval import rrf, time_window

pytestmark = pytest.mark.unit


def test_rrf_rewards_agreement_between_rankers() -> None:
    fused = rrf([(1.0, ["a", "b", "c"]), (1.0, ["d", "b", "e"])], k=60)
    assert max(fused, key=fused.__getitem__) == "b"  # 2nd in both beats 1st in one
    assert fused["a"] == pytest.approx(1 / 61)


def test_rrf_weight_zero_ignores_a_ranker() -> None:
    fused = rrf([(1.0, ["a"]), (0.0, ["b"])], k=60)
    assert set(fused) == {"a"}


@given(st.lists(st.lists(st.sampled_from("abcdefgh"), unique=True), max_size=4))
def test_rrf_is_order_independent_and_positive(lists: list[list[str]]) -> None:
    a = rrf([(1.0, x) for x in lists], k=10)
    b = rrf([(1.0, x) for x in reversed(lists)], k=10)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key])
        assert a[key] > 0


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("what happened on 2023-05-08?", datetime(2023, 5, 8), datetime(2023, 5, 9)),
        ("what did she do on 8 May, 2023", datetime(2023, 5, 8), datetime(2023, 5, 9)),
        ("plans for May 8, 2023", datetime(2023, 5, 8), datetime(2023, 5, 9)),
        ("trips in June 2022", datetime(2022, 6, 1), datetime(2022, 7, 1)),
        ("what did Ana do in 2021", datetime(2021, 1, 1), datetime(2022, 1, 1)),
    ],
)
def test_time_window(query: str, start: datetime, end: datetime) -> None:
    w = time_window(query)
    assert w is not None
    assert (w.start, w.end) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_no_time_and_impossible_dates() -> None:
    assert time_window("where does Ana live?") is None
    assert time_window("on 2023-02-31") is None
