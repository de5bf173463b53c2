"""Cypher and Lucene text of the Neo4j store: filters, safe full-text queries, metadata keys.

Nothing here puts a value into Cypher text. Fragments name ``$parameters`` and
return the parameter values beside them; the only identifiers spliced into
queries are the constants of neo4j_schema (labels, index names, relationship
types). Lucene query strings are values too (passed as a parameter to
``db.index.fulltext.queryNodes``), and they are built from letters and digits
only, so no user text reaches Lucene's query syntax.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.vault.stores.neo4j_schema import SCOPE_PROPERTY, TEXT_PROPERTY
from services.vault.stores.sqlite_query import query_terms
from shared.schemas.api import SearchFilters

# Lucene's EnglishAnalyzer stop set (what Neo4j's "english" analyzer drops). A
# query made only of these would analyse to nothing, and an empty text clause
# would leave only the scope clause: every cube in scope would "match".
_LUCENE_STOP_TEXT = """
    a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with
"""
LUCENE_STOPWORDS = frozenset(_LUCENE_STOP_TEXT.split())

# Lucene refuses boolean queries of more than 1024 clauses; past this many
# namespaces the query names the tenant's token instead of one per namespace.
MAX_SCOPE_TOKENS = 256

_INT64 = (-(2**63), 2**63 - 1)


def epoch(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


# --- full-text scope ------------------------------------------------------------


def _token(kind: str, *parts: str) -> str:
    # A letter then hex digits: one token for Lucene's standard tokenizer, and
    # the same analysis (lower-casing, stemming) applies at index and query time.
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    return f"{kind}{digest}"


def namespace_token(tenant: str, namespace: str) -> str:
    return _token("n", tenant, namespace)


def tenant_token(tenant: str) -> str:
    return _token("t", tenant)


def scope_value(tenant: str, namespace: str) -> str:
    """The ``scope`` property of a searchable cube: its namespace's and tenant's tokens.

    The full-text index covers ``scope`` beside the text, so a query can require
    the caller's namespaces inside Lucene, which keeps other tenants' matches from
    crowding the top hits out before the Cypher filter (which stays the authority)
    sees them. Tokens are hashes: ids never appear in the index's terms.
    """
    return f"{namespace_token(tenant, namespace)} {tenant_token(tenant)}"


def _phrase(term: str) -> str:
    # Terms hold letters and digits only; escaping anyway keeps this function
    # safe on its own, whatever a future caller hands it.
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lucene_query(text: str, tenant: str, namespaces: Sequence[str]) -> str | None:
    """A safe Lucene query ORing the words of ``text``, restricted to the scope.

    None when no word is left (empty input, punctuation, only stopwords). Each
    word is a quoted phrase, so AND, OR, NOT, field names and wildcards in the
    user's text are plain words. The scope clause is required and boosted by
    0, so it filters without changing the BM25 score of the text.
    """
    terms = [t for t in query_terms(text) if t not in LUCENE_STOPWORDS]
    if not terms:
        return None
    if len(namespaces) <= MAX_SCOPE_TOKENS:
        tokens = [namespace_token(tenant, ns) for ns in namespaces]
    else:
        tokens = [tenant_token(tenant)]
    words = " OR ".join(_phrase(t) for t in terms)
    scope = " OR ".join(tokens)
    return f"+{TEXT_PROPERTY}:({words}) +{SCOPE_PROPERTY}:({scope})^0"


# --- metadata equality -------------------------------------------------------------


def meta_entry(key: str, value: object) -> str | None:
    """One top-level metadata pair as a typed string, for equality filters.

    Stored in the list property ``meta_kv`` and compared with ``IN``, so
    arbitrary client keys never become Neo4j property keys (tokens are global
    and never freed). The key is length-prefixed, so no key or value can forge
    another pair. Type tags keep True apart from 1 and "1" apart from 1; numbers
    share one tag so that 2 matches 2.0, as JSON numbers do. None for what an
    equality filter cannot match (nested values, null, integers beyond 64 bits).
    """
    if isinstance(value, bool):
        typed = "b:true" if value else "b:false"
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            return None
        typed = f"n:{value}"
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and _INT64[0] <= value <= _INT64[1]:
            typed = f"n:{int(value)}"
        else:
            typed = f"n:{value!r}"
    elif isinstance(value, str):
        typed = f"s:{value}"
    else:
        return None
    return f"{len(key)}:{key}={typed}"


def meta_entries(metadata: dict[str, Any]) -> list[str]:
    return [e for k, v in metadata.items() if (e := meta_entry(k, v)) is not None]


# --- filters -----------------------------------------------------------------------


class Unmatchable(Exception):
    """A filter no cube can pass (an odd metadata value): the search is empty."""


def filter_cypher(f: SearchFilters | None, var: str = "c") -> tuple[str, dict[str, Any]]:
    """`` AND ...`` conditions on ``var`` for ``f``, and their parameters.

    An empty list means "no condition", like an absent one. A cube without an
    event time fails any time bound (null comparisons are not true). Raises
    Unmatchable when a metadata value can never be equal to a stored one.
    """
    if f is None:
        return "", {}
    parts: list[str] = []
    params: dict[str, Any] = {}
    if f.semantic_type:
        parts.append(f"{var}.semantic_type IN $f_semantic")
        params["f_semantic"] = [str(s) for s in f.semantic_type]
    if f.origin:
        parts.append(f"{var}.origin IN $f_origin")
        params["f_origin"] = [str(o) for o in f.origin]
    if f.event_time_from is not None:
        parts.append(f"{var}.event_time >= $f_from")
        params["f_from"] = epoch(f.event_time_from)
    if f.event_time_to is not None:
        parts.append(f"{var}.event_time <= $f_to")
        params["f_to"] = epoch(f.event_time_to)
    if f.tags_any:
        parts.append(f"any(t IN {var}.tags WHERE t IN $f_tags_any)")
        params["f_tags_any"] = sorted(set(f.tags_any))
    if f.tags_all:
        parts.append(f"all(t IN $f_tags_all WHERE t IN {var}.tags)")
        params["f_tags_all"] = sorted(set(f.tags_all))
    if f.metadata:
        entries = []
        for key, value in f.metadata.items():
            entry = meta_entry(key, value)
            if entry is None:
                raise Unmatchable(key)
            entries.append(entry)
        parts.append(f"all(kv IN $f_meta WHERE kv IN {var}.meta_kv)")
        params["f_meta"] = entries
    if not parts:
        return "", {}
    return " AND " + " AND ".join(parts), params


def has_filters(f: SearchFilters | None) -> bool:
    return f is not None and bool(
        f.semantic_type
        or f.origin
        or f.event_time_from is not None
        or f.event_time_to is not None
        or f.tags_any
        or f.tags_all
        or f.metadata
    )


def scope_cypher(var: str = "c") -> str:
    """Tenant, namespaces, current and searchable: the part of every search."""
    return (
        f"{var}.tenant = $tenant AND {var}.namespace IN $namespaces"
        f" AND {var}.is_current = true AND {var}.searchable = true"
    )
