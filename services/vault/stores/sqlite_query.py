"""The SQLite store's search SQL: filters, query words, safe FTS5 queries.

Nothing here interpolates a value into SQL: fragments carry ``?`` markers and
their values travel beside them as parameters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from shared.schemas.api import SearchFilters

MAX_QUERY_TERMS = 32
MAX_TERM_CHARS = 64

# Words too common to help ranking. BM25 already down-weights them, but ORing them
# in makes nearly every document a candidate, which is slow and adds noise.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Letters and digits of any script; everything else (FTS5 operators, quotes, '*',
# '^', ':', parentheses, '_') separates words, so no user text reaches FTS5 syntax.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """Lower-cased words of ``text``, stopwords dropped unless nothing else is left."""
    words = [w[:MAX_TERM_CHARS] for w in _WORD.findall(unicodedata.normalize("NFKC", text).lower())]
    kept = [w for w in words if w not in STOPWORDS] or words
    seen: dict[str, None] = {}
    for w in kept:
        seen.setdefault(w, None)
    return list(seen)[:MAX_QUERY_TERMS]


def fts_match(text: str) -> str | None:
    """A safe FTS5 MATCH expression ORing the words of ``text``; None when it has none.

    Each term is a double-quoted string, so keywords such as NEAR, AND, NOT or a
    column name are matched as plain words. Terms only contain letters and digits,
    so they cannot contain the quote that would end the string.
    """
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join(f'"{t}"' for t in terms)


def epoch(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def qmarks(n: int) -> str:
    """``?,?,?`` for an ``IN (...)`` of ``n`` parameters."""
    return ",".join("?" * n)


def scope_sql(tenant: str, namespaces: Sequence[str], alias: str = "c") -> tuple[str, list[object]]:
    """Tenant, namespaces and "current and searchable": the part every search shares."""
    sql = (
        f"{alias}.tenant = ? AND {alias}.namespace IN ({qmarks(len(namespaces))})"
        f" AND {alias}.is_current = 1 AND {alias}.searchable = 1"
    )
    return sql, [tenant, *namespaces]


def filter_sql(
    f: SearchFilters | None, alias: str = "c", *, include_columns: bool = True
) -> tuple[str, list[object]]:
    """`` AND ...`` conditions for ``f`` (an empty string when nothing filters).

    An empty list in a filter means "no condition", like an absent one.
    ``include_columns=False`` leaves out the conditions on plain columns
    (semantic type, origin, event time), for callers that apply those themselves.
    """
    if f is None:
        return "", []
    parts: list[str] = []
    params: list[object] = []
    if include_columns:
        if f.semantic_type:
            parts.append(f"{alias}.semantic_type IN ({qmarks(len(f.semantic_type))})")
            params.extend(str(s) for s in f.semantic_type)
        if f.origin:
            parts.append(f"{alias}.origin IN ({qmarks(len(f.origin))})")
            params.extend(str(o) for o in f.origin)
        if f.event_time_from is not None:
            parts.append(f"{alias}.event_time >= ?")
            params.append(epoch(f.event_time_from))
        if f.event_time_to is not None:
            parts.append(f"{alias}.event_time <= ?")
            params.append(epoch(f.event_time_to))
    # "rid IN (subquery)" lets SQLite start from the tag index instead of probing
    # the tags of every candidate row.
    if f.tags_any:
        tags = sorted(set(f.tags_any))
        parts.append(
            f"{alias}.rid IN (SELECT t.rid FROM cube_tags t WHERE t.tag IN ({qmarks(len(tags))}))"
        )
        params.extend(tags)
    if f.tags_all:
        tags = sorted(set(f.tags_all))
        parts.append(
            f"{alias}.rid IN (SELECT t.rid FROM cube_tags t"
            f" WHERE t.tag IN ({qmarks(len(tags))}) GROUP BY t.rid HAVING COUNT(*) = ?)"
        )
        params.extend(tags)
        params.append(len(tags))
    for key, value in (f.metadata or {}).items():
        cond, cond_params = _metadata_condition(alias, key, value)
        parts.append(cond)
        params.extend(cond_params)
    if not parts:
        return "", []
    return " AND " + " AND ".join(parts), params


def has_row_filters(f: SearchFilters | None) -> bool:
    """True when ``f`` has conditions that need SQL (tags or metadata)."""
    return f is not None and bool(f.tags_any or f.tags_all or f.metadata)


_INT64 = (-(2**63), 2**63 - 1)


def meta_value(value: object) -> tuple[str, object] | None:
    """(type, value) as stored in cube_meta; None for what equality filters cannot
    match (nested values, null, integers beyond 64 bits)."""
    if isinstance(value, bool):
        return ("true" if value else "false"), int(value)
    if isinstance(value, int):
        return ("integer", value) if _INT64[0] <= value <= _INT64[1] else None
    if isinstance(value, float):
        return "real", value
    if isinstance(value, str):
        return "text", value
    return None


def _metadata_condition(alias: str, key: str, value: object) -> tuple[str, list[object]]:
    # The type is compared too, so that True does not match 1 nor "1" match 1; an
    # integer filter matches a stored float of the same value, as JSON numbers do.
    typed = meta_value(value)
    if typed is None:
        return "0", []
    kind, stored = typed
    types = ["integer", "real"] if kind in ("integer", "real") else [kind]
    return (
        f"{alias}.rid IN (SELECT m.rid FROM cube_meta m WHERE m.key = ? AND m.value = ?"
        f" AND m.type IN ({qmarks(len(types))}))",
        [key, stored, *types],
    )
