"""Fusion and query-time parsing of the vault's retriever."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.vault.retrieval import fuse, rrf, time_window
from shared.ports.graph import Scored

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


def _s(*pairs: tuple[str, float]) -> list[Scored]:
    return [Scored(cid, score) for cid, score in pairs]


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_score_fusion_keeps_a_strong_keyword_margin(method: str) -> None:
    # dense is undecided (all close); keyword is sure about "b": b must win
    dense = _s(("a", 0.52), ("b", 0.51), ("c", 0.50))
    keyword = _s(("b", 12.0), ("a", 1.0), ("c", 0.9))
    fused = fuse([(1.0, dense), (1.0, keyword)], method, 60)
    assert max(fused, key=fused.__getitem__) == "b"


def test_zscore_missing_candidate_gets_the_lists_minimum() -> None:
    fused = fuse([(1.0, _s(("a", 1.0), ("b", 0.0))), (1.0, _s(("c", 5.0)))], "zscore", 60)
    assert fused["a"] > fused["b"]
    assert set(fused) == {"a", "b", "c"}


def test_zero_weight_list_has_no_influence() -> None:
    one = fuse([(1.0, _s(("a", 1.0), ("b", 0.5))), (0.0, _s(("b", 9.0)))], "zscore", 60)
    assert one["a"] > one["b"]


def test_unknown_fusion_method() -> None:
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse([(1.0, _s(("a", 1.0)))], "borda", 60)
