"""The SQLite store's query helpers: safe FTS5 expressions and filter SQL."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.vault.stores.sqlite_query import (
    MAX_QUERY_TERMS,
    filter_sql,
    fts_match,
    has_row_filters,
    meta_value,
    query_terms,
)
from shared.schemas.api import SearchFilters

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
    conn.executemany(
        "INSERT INTO t (text) VALUES (?)",
        [("alpha beta",), ("near and or not",), ("日本語",), ("café crème",)],
    )
    return conn


def test_terms_drop_stopwords_and_syntax() -> None:
    assert query_terms('What did "Alice" say about NEAR(the cats)*?') == [
        "alice",
        "say",
        "near",
        "cats",
    ]
    assert query_terms("the of and") == ["the", "of", "and"]  # nothing else left: keep them
    assert query_terms("foo_bar foo") == ["foo", "bar"]
    assert query_terms("***") == []
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS


def test_match_expression_quotes_every_term() -> None:
    assert fts_match("alpha NEAR beta") == '"alpha" OR "near" OR "beta"'
    assert fts_match("") is None
    assert fts_match(" \t\n") is None
    assert fts_match("'\"*^:()") is None


def test_unicode_is_normalised() -> None:
    assert query_terms("ﬁle Ｃａｆé") == ["file", "café"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_a_valid_query(fts: sqlite3.Connection, text: str) -> None:
    match = fts_match(text)
    if match is not None:
        fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


def test_keywords_match_as_words(fts: sqlite3.Connection) -> None:
    for word in ("NEAR", "AND", "OR", "NOT"):
        match = fts_match(word)
        assert match is not None
        assert fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall() == [(2,)]


def test_filter_sql_is_parameterised() -> None:
    f = SearchFilters(
        tags_any=["a'; DROP TABLE cubes; --"],
        metadata={"k'ey": "v'al"},
    )
    sql, params = filter_sql(f)
    assert "DROP" not in sql and "k'ey" not in sql and "v'al" not in sql
    assert "a'; DROP TABLE cubes; --" in params
    assert sql.count("?") == len(params)


def test_empty_filters_are_no_conditions() -> None:
    assert filter_sql(None) == ("", [])
    assert filter_sql(SearchFilters()) == ("", [])
    assert filter_sql(SearchFilters(tags_any=[], semantic_type=[])) == ("", [])
    assert not has_row_filters(SearchFilters(semantic_type=[]))
    assert has_row_filters(SearchFilters(metadata={"a": 1}))


def test_column_conditions_can_be_left_out() -> None:
    f = SearchFilters(semantic_type=["fact"], tags_all=["x"])  # type: ignore[list-item]
    sql, params = filter_sql(f, include_columns=False)
    assert "semantic_type" not in sql and params == ["x", 1]


def test_meta_values() -> None:
    assert meta_value(True) == ("true", 1)
    assert meta_value(0) == ("integer", 0)
    assert meta_value(1.5) == ("real", 1.5)
    assert meta_value("x") == ("text", "x")
    assert meta_value(2**64) is None
    assert meta_value(None) is None
    assert meta_value({"a": 1}) is None
