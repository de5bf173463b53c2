"""Relative date resolution (services.interface.dates): examples and properties."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.interface.dates import annotate, find_relative_dates

pytestmark = pytest.mark.unit

BASE = date(2023, 5, 8)  # a Monday
bases = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def one(text: str, base: date = BASE) -> tuple[date, str]:
    found = find_relative_dates(text, base)
    assert len(found) == 1, found
    return found[0].date, found[0].granularity


@pytest.mark.parametrize(
    ("text", "expected", "granularity"),
    [
        ("today", "2023-05-08", "day"),
        ("tonight", "2023-05-08", "day"),
        ("this morning", "2023-05-08", "day"),
        ("yesterday", "2023-05-07", "day"),
        ("last night", "2023-05-07", "day"),
        ("tomorrow", "2023-05-09", "day"),
        ("the day before yesterday", "2023-05-06", "day"),
        ("the day after tomorrow", "2023-05-10", "day"),
        ("two days ago", "2023-05-06", "day"),
        ("a couple of days ago", "2023-05-06", "day"),
        ("3 weeks ago", "2023-04-17", "week"),
        ("a month ago", "2023-04-08", "month"),
        ("two years ago", "2021-05-08", "year"),
        ("in 2 days", "2023-05-10", "day"),
        ("in a week", "2023-05-15", "week"),
        ("5 days from now", "2023-05-13", "day"),
        ("last week", "2023-05-01", "week"),
        ("this week", "2023-05-08", "week"),
        ("next week", "2023-05-15", "week"),
        ("last weekend", "2023-05-06", "weekend"),
        ("this past weekend", "2023-05-06", "weekend"),
        ("this weekend", "2023-05-13", "weekend"),
        ("next weekend", "2023-05-20", "weekend"),
        ("last month", "2023-04-01", "month"),
        ("next month", "2023-06-01", "month"),
        ("last year", "2022-01-01", "year"),
        ("next year", "2024-01-01", "year"),
        ("last Friday", "2023-05-05", "day"),
        ("last Monday", "2023-05-01", "day"),
        ("next Tuesday", "2023-05-09", "day"),
        ("next Monday", "2023-05-15", "day"),
        ("this Sunday", "2023-05-14", "day"),
        ("YESTERDAY", "2023-05-07", "day"),
        ("last\n  week", "2023-05-01", "week"),
    ],
)
def test_examples(text: str, expected: str, granularity: str) -> None:
    assert one(text) == (date.fromisoformat(expected), granularity)


@pytest.mark.parametrize(
    "text",
    [
        "I may go in March",
        "wait a second",
        "see you on Friday",
        "the last of the mohicans",
        "next to the window",
        "this is the weekender",
        "weekday yesterdays",
        "12345 days ago",
        "todays",
        "recently, a few days ago",
        "",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert find_relative_dates(text, BASE) == []


def test_several_expressions_in_order_with_spans() -> None:
    text = "Yesterday I said I'd go next month, not last week."
    found = find_relative_dates(text, BASE)
    assert [r.text for r in found] == ["Yesterday", "next month", "last week"]
    for r in found:
        assert text[r.start : r.end] == r.text
    assert found[0].as_dict() == {"text": "Yesterday", "date": "2023-05-07", "granularity": "day"}


def test_annotate_writes_absolute_dates_after_expressions() -> None:
    text = "I went yesterday and will go next month, or last week maybe, last year too."
    out = annotate(text, find_relative_dates(text, BASE))
    assert out == (
        "I went yesterday [2023-05-07] and will go next month [2023-06], "
        "or last week [week of 2023-05-01] maybe, last year [2022] too."
    )
    assert annotate("nothing here", []) == "nothing here"


def test_out_of_range_results_are_dropped() -> None:
    assert find_relative_dates("yesterday", date.min) == []
    assert find_relative_dates("last year", date.min) == []
    assert find_relative_dates("tomorrow and next month", date.max) == []
    assert one("today", date.max) == (date.max, "day")


# --- properties -------------------------------------------------------------------


@given(bases, st.text(max_size=200))
def test_deterministic_and_spans_are_exact(base: date, text: str) -> None:
    a = find_relative_dates(text, base)
    assert a == find_relative_dates(text, base)
    for r in a:
        assert text[r.start : r.end] == r.text
    assert all(x.end <= y.start for x, y in pairwise(a))


@given(bases, st.integers(min_value=0, max_value=9999))
def test_n_days_ago_and_ahead(base: date, n: int) -> None:
    assert one(f"{n} days ago", base) == (base - timedelta(days=n), "day")
    assert one(f"in {n} days", base) == (base + timedelta(days=n), "day")
    assert one(f"{n} days from now", base) == (base + timedelta(days=n), "day")


@given(bases, st.integers(min_value=0, max_value=500))
def test_n_weeks_ago(base: date, n: int) -> None:
    assert one(f"{n} weeks ago", base) == (base - timedelta(weeks=n), "week")


@given(bases, st.integers(min_value=1, max_value=60))
def test_n_months_ago_stays_near(base: date, n: int) -> None:
    when, gran = one(f"{n} months ago", base)
    assert gran == "month"
    assert (base.year * 12 + base.month) - (when.year * 12 + when.month) == n
    assert when.day <= base.day


@given(bases)
def test_last_and_next_week_are_mondays(base: date) -> None:
    last, gran = one("last week", base)
    assert gran == "week" and last.weekday() == 0
    assert 7 <= (base - last).days <= 13
    nxt, _ = one("next week", base)
    assert nxt.weekday() == 0 and 1 <= (nxt - base).days <= 7
    this, _ = one("this week", base)
    assert this.weekday() == 0 and 0 <= (base - this).days <= 6


@given(bases)
def test_weekends_are_saturdays_of_iso_weeks(base: date) -> None:
    this, gran = one("this weekend", base)
    assert gran == "weekend" and this.weekday() == 5
    assert this.isocalendar()[:2] == base.isocalendar()[:2]
    assert one("last weekend", base)[0] == this - timedelta(weeks=1)
    assert one("next weekend", base)[0] == this + timedelta(weeks=1)


@given(bases)
def test_last_and_next_month_and_year(base: date) -> None:
    last, gran = one("last month", base)
    assert gran == "month" and last.day == 1
    assert (base.year * 12 + base.month) - (last.year * 12 + last.month) == 1
    nxt, _ = one("next month", base)
    assert nxt.day == 1 and (nxt.year * 12 + nxt.month) - (base.year * 12 + base.month) == 1
    assert one("last year", base) == (date(base.year - 1, 1, 1), "year")
    assert one("next year", base) == (date(base.year + 1, 1, 1), "year")


@given(bases, st.sampled_from(WEEKDAYS))
def test_last_and_next_weekday(base: date, day: str) -> None:
    target = WEEKDAYS.index(day)
    last, _ = one(f"last {day}", base)
    assert last.weekday() == target and 1 <= (base - last).days <= 7
    nxt, _ = one(f"next {day}", base)
    assert nxt.weekday() == target and 1 <= (nxt - base).days <= 7
    this, _ = one(f"this {day}", base)
    assert this.weekday() == target and this.isocalendar()[:2] == base.isocalendar()[:2]


@given(st.dates(), st.sampled_from(["yesterday", "tomorrow", "last week", "next month"]))
def test_never_raises_at_the_edges_of_the_calendar(base: date, text: str) -> None:
    for r in find_relative_dates(text, base):
        assert abs((r.date - base).days) <= 40
