"""Relative date expressions, resolved against the date a message was written.

MemReader calls :func:`find_relative_dates` on each message with the message's
own (local) calendar date as the base, so that "yesterday" in a message sent on
2023-05-08 becomes 2023-05-07 whenever the memory is read later.

Rules (case-insensitive, whole words; ``N`` is 1-9999 in digits, a number word
from one to twenty or thirty/forty/fifty/sixty, "a"/"an" = 1, "a couple of" = 2):

=================================  ============================  ===========
expression                         resolves to                   granularity
=================================  ============================  ===========
today, tonight, this morning,      base                          day
this afternoon, this evening
yesterday, last night              base - 1 day                  day
tomorrow                           base + 1 day                  day
the day before yesterday           base - 2 days                 day
the day after tomorrow             base + 2 days                 day
N days ago / in N days /           base -/+ N days               day
N days from now
N weeks ago / in N weeks / ...     base -/+ 7N days              week
N months ago / in N months / ...   base -/+ N months (clamped)   month
N years ago / in N years / ...     base -/+ N years (clamped)    year
last / this / next week            Monday of the previous /      week
                                   current / next ISO week
last / this / next weekend         Saturday of the previous /    weekend
                                   current / next ISO week
last / this / next month           first day of that month       month
last / this / next year            1 January of that year        year
last <weekday>                     latest such day strictly      day
                                   before base (1-7 days back)
next <weekday>                     first such day strictly       day
                                   after base (1-7 days ahead)
this <weekday>                     that day in base's ISO week   day
=================================  ============================  ===========

"this past" means "last" (``this past weekend``). Weeks are ISO weeks (Monday to
Sunday). "N weeks ago" is an offset (a point, about then), whereas "last week"
names a calendar week, hence the different anchors. A result outside the years
1-9999 is dropped. Bare weekdays ("on Friday") and vague phrases ("recently", "a
few days ago", "last summer") are not resolved: their direction or extent depends
on tense and context that regexes cannot see.

Why not ``dateparser.search.search_dates``: on thousands of messages it is two to
three orders of magnitude slower than one precompiled regex, and it reports many
false positives in chat text ("may", "second", "march", "sun", bare numbers),
each of which would put a wrong absolute date into a memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from dateutil.relativedelta import relativedelta

Granularity = Literal["day", "week", "weekend", "month", "year"]

_NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
}  # fmt: skip
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_NUM = r"\d{1,4}|a\s+couple\s+of|couple\s+of|an?|" + "|".join(
    sorted(_NUMBER_WORDS, key=len, reverse=True)
)
_UNIT = r"day|week|month|year"
_DAY = "|".join(_WEEKDAYS)

# One alternation, scanned once per message. Each alternative is wrapped in an
# outer named group; ``Match.lastgroup`` is that outer group (it closes last).
_PATTERN = re.compile(
    r"\b(?:"
    r"(?P<before_yesterday>the\s+day\s+before\s+yesterday)"
    r"|(?P<after_tomorrow>the\s+day\s+after\s+tomorrow)"
    r"|(?P<today>today|tonight|this\s+(?:morning|afternoon|evening))"
    r"|(?P<yesterday>yesterday|last\s+night)"
    r"|(?P<tomorrow>tomorrow)"
    rf"|(?P<ago>(?P<ago_n>{_NUM})\s+(?P<ago_u>{_UNIT})s?\s+ago)"
    rf"|(?P<ahead>in\s+(?P<in_n>{_NUM})\s+(?P<in_u>{_UNIT})s?)"
    rf"|(?P<from_now>(?P<fn_n>{_NUM})\s+(?P<fn_u>{_UNIT})s?\s+from\s+now)"
    r"|(?P<period>(?P<p_w>this\s+past|last|next|this)\s+(?P<p_u>weekend|week|month|year))"
    rf"|(?P<weekday>(?P<d_w>this\s+past|last|next|this)\s+(?P<d_d>{_DAY}))"
    r")\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ResolvedDate:
    """One expression found in a text, with its span and absolute date."""

    text: str
    start: int
    end: int
    date: date
    granularity: Granularity

    def as_dict(self) -> dict[str, str]:
        return {"text": self.text, "date": self.date.isoformat(), "granularity": self.granularity}

    def label(self) -> str:
        """How the date is written into the memory's text, e.g. ``2023-05-07``."""
        d = self.date
        if self.granularity == "week":
            return f"week of {d.isoformat()}"
        if self.granularity == "weekend":
            return f"weekend of {d.isoformat()}"
        if self.granularity == "month":
            return f"{d.year:04d}-{d.month:02d}"
        if self.granularity == "year":
            return f"{d.year:04d}"
        return d.isoformat()


def _number(word: str) -> int:
    w = _SPACES.sub(" ", word.lower())
    if w.isdigit():
        return int(w)
    if w in ("a", "an"):
        return 1
    if w.endswith("couple of"):
        return 2
    return _NUMBER_WORDS[w]


def _shift(base: date, n: int, unit: str) -> tuple[date, Granularity]:
    u = unit.lower()
    if u == "day":
        return base + timedelta(days=n), "day"
    if u == "week":
        return base + timedelta(days=7 * n), "week"
    if u == "month":
        return base + relativedelta(months=n), "month"
    return base + relativedelta(years=n), "year"


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _period(base: date, which: str, unit: str) -> tuple[date, Granularity]:
    step = {"last": -1, "this past": -1, "this": 0, "next": 1}[which]
    u = unit.lower()
    if u == "week":
        return _monday(base) + timedelta(weeks=step), "week"
    if u == "weekend":
        return _monday(base) + timedelta(weeks=step, days=5), "weekend"
    if u == "month":
        return base.replace(day=1) + relativedelta(months=step), "month"
    return date(base.year + step, 1, 1), "year"


def _weekday(base: date, which: str, day: str) -> date:
    target = _WEEKDAYS.index(day.lower())
    if which in ("last", "this past"):
        return base - timedelta(days=(base.weekday() - target) % 7 or 7)
    if which == "next":
        return base + timedelta(days=(target - base.weekday()) % 7 or 7)
    return _monday(base) + timedelta(days=target)


def _resolve(m: re.Match[str], base: date) -> tuple[date, Granularity]:
    kind = m.lastgroup
    if kind == "today":
        return base, "day"
    if kind == "yesterday":
        return base - timedelta(days=1), "day"
    if kind == "tomorrow":
        return base + timedelta(days=1), "day"
    if kind == "before_yesterday":
        return base - timedelta(days=2), "day"
    if kind == "after_tomorrow":
        return base + timedelta(days=2), "day"
    if kind == "ago":
        return _shift(base, -_number(m["ago_n"]), m["ago_u"])
    if kind == "ahead":
        return _shift(base, _number(m["in_n"]), m["in_u"])
    if kind == "from_now":
        return _shift(base, _number(m["fn_n"]), m["fn_u"])
    if kind == "period":
        return _period(base, _SPACES.sub(" ", m["p_w"].lower()), m["p_u"])
    if kind == "weekday":
        return _weekday(base, _SPACES.sub(" ", m["d_w"].lower()), m["d_d"]), "day"
    raise AssertionError(f"unhandled date pattern {kind!r}")  # pragma: no cover


def find_relative_dates(text: str, base: date) -> list[ResolvedDate]:
    """Every relative date expression in ``text``, resolved against ``base``, in order."""
    found: list[ResolvedDate] = []
    for m in _PATTERN.finditer(text):
        try:
            when, granularity = _resolve(m, base)
        except (OverflowError, ValueError):  # before year 1 or after 9999
            continue
        found.append(ResolvedDate(m.group(0), m.start(), m.end(), when, granularity))
    return found


def annotate(text: str, resolved: list[ResolvedDate]) -> str:
    """``text`` with ``" [<absolute date>]"`` written after each resolved expression."""
    if not resolved:
        return text
    parts: list[str] = []
    pos = 0
    for r in resolved:
        parts.append(text[pos : r.end])
        parts.append(f" [{r.label()}]")
        pos = r.end
    parts.append(text[pos:])
    return "".join(parts)
