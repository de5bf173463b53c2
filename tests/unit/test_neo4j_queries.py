"""The Neo4j store's pure parts, without a server: safe Lucene queries, metadata
entries, parameter-only filters, write plans, and the lazy registry entry."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.vault.stores.neo4j_queries import (
    LUCENE_STOPWORDS,
    Unmatchable,
    filter_cypher,
    lucene_query,
    meta_entry,
    namespace_token,
    scope_value,
)
from services.vault.stores.neo4j_search import first_round, next_round
from services.vault.stores.neo4j_write import plan_batch
from shared.errors import BadRequest
from shared.ports.graph import CubeWrite, WriteBatch
from shared.schemas.api import SearchFilters
from tests.contract.graph_support import make_cube

pytestmark = pytest.mark.unit

TOKEN = r"[nt][0-9a-f]{24}"
# The whole grammar a query may have: quoted letter/digit words ORed, then the
# zero-boosted scope clause. Nothing of the user's text can add an operator.
SAFE = re.compile(
    rf'^\+index_text:\("[^\W_]+"( OR "[^\W_]+")*\) \+scope:\({TOKEN}( OR {TOKEN})*\)\^0$'
)


@given(st.text(max_size=300))
@settings(max_examples=400, deadline=None)
def test_lucene_query_is_always_safe(text: str) -> None:
    q = lucene_query(text, "tenant", ["ns1", "ns2"])
    assert q is None or SAFE.match(q), q


@pytest.mark.parametrize(
    "text",
    ["", "   ", "*", '"', "(((", "AND", "NOT alpha", "title:x", "a\\b", "the of and", "\x00"],
)
def test_lucene_query_hostile_examples(text: str) -> None:
    q = lucene_query(text, "t", ["n"])
    assert q is None or SAFE.match(q), q


def test_stopword_only_queries_are_empty() -> None:
    # The analyser would drop every word and leave only the scope clause.
    assert lucene_query("the of and", "t", ["n"]) is None
    assert lucene_query(" ".join(sorted(LUCENE_STOPWORDS)), "t", ["n"]) is None
    q = lucene_query("NEAR(alpha beta)", "t", ["n"])
    assert q is not None and '"alpha"' in q and '"near"' in q


def test_scope_tokens_are_per_tenant_and_namespace() -> None:
    assert namespace_token("a", "n") != namespace_token("b", "n")
    assert namespace_token("a", "n") != namespace_token("a", "m")
    # ("a b", "c") and ("a", "b c") must not collide through concatenation.
    assert namespace_token("a b", "c") != namespace_token("a", "b c")
    assert scope_value("a", "n").split()[0] == namespace_token("a", "n")
    many = [f"ns{i}" for i in range(1000)]
    q = lucene_query("alpha", "a", many)
    assert q is not None and q.count(" OR ") == 0  # falls back to the tenant token


def test_meta_entries_keep_types_apart() -> None:
    assert meta_entry("k", True) != meta_entry("k", 1)
    assert meta_entry("k", "1") != meta_entry("k", 1)
    assert meta_entry("k", 2) == meta_entry("k", 2.0)
    assert meta_entry("k", 2.5) != meta_entry("k", 2)
    for odd in (2**70, {"a": 1}, None, [1, 2]):
        assert meta_entry("k", odd) is None
    # A key cannot forge another pair: the key is length-prefixed.
    assert meta_entry("a=s:b", "c") != meta_entry("a", "b=s:c")


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5))
@settings(max_examples=100, deadline=None)
def test_filter_values_travel_as_parameters(tags: list[str]) -> None:
    f = SearchFilters(tags_any=tags, tags_all=tags, metadata={t: t for t in tags})
    cypher, params = filter_cypher(f)
    # No literal can carry a value: the statement has no quotes at all (the regex
    # below), and every value is among the parameters. (Checking that a tag's text
    # is absent from the statement fails on tags like "all" or "any", which are
    # Cypher words the statement uses.)
    assert all(t in params["f_tags_any"] for t in tags)
    assert set(params) == {"f_tags_any", "f_tags_all", "f_meta"}
    assert re.fullmatch(r"[\w\s.$()=<>,]*", cypher), cypher


def test_filters_empty_and_unmatchable() -> None:
    assert filter_cypher(None) == ("", {})
    assert filter_cypher(SearchFilters(tags_any=[])) == ("", {})
    with pytest.raises(Unmatchable):
        filter_cypher(SearchFilters(metadata={"big": 2**70}))
    cypher, params = filter_cypher(
        SearchFilters(event_time_from=datetime(2025, 1, 1, tzinfo=UTC)), "x.c"
    )
    assert cypher == " AND x.c.event_time >= $f_from" and isinstance(params["f_from"], float)


def test_next_round_follows_the_pass_rate() -> None:
    assert next_round(200, 100, 200, 100) == 400  # at least double
    assert next_round(264, 100, 264, 5) == 7920  # 1.5 * k / (5 / 264)
    assert next_round(264, 100, 264, 0) > 16_384  # nothing passed: scan instead
    assert first_round(100, None) == 200
    assert first_round(100, 1.0) == 136  # the scope is the whole index: little margin
    assert first_round(100, 0.5) == 256


def test_write_plan_checks_vectors_and_markers() -> None:
    cube = make_cube("t", "n", "text")
    with pytest.raises(ValueError, match="dimensions"):
        plan_batch(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=np.ones(3))]), 4)
    with pytest.raises(ValueError, match="finite"):
        plan_batch(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=np.full(4, np.nan))]), 4)
    with pytest.raises(ValueError, match="superseded"):
        plan_batch(WriteBatch(superseded=[("other", 1)]), 4)
    twin = cube.model_copy(update={"tenant": "u"})
    with pytest.raises(BadRequest):
        plan_batch(WriteBatch(cubes=[CubeWrite(cube=cube), CubeWrite(cube=twin)]), 4)
    plan = plan_batch(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=np.zeros(4))]), 4)
    assert plan.cubes[0]["vector"] is None and not plan.cubes[0]["searchable"]
    plan = plan_batch(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=np.full(4, 2.0))]), 4)
    assert plan.cubes[0]["vector"] == pytest.approx([0.5] * 4)
    assert plan.cubes[0]["props"]["index_text"] == "text" and plan.cubes[0]["searchable"]


def test_choosing_sqlite_does_not_import_the_neo4j_driver() -> None:
    code = (
        "import sys; from services.vault.stores import GRAPH_STORES;"
        " assert 'bolt' in GRAPH_STORES.names();"
        " assert not any(m == 'neo4j' or m.startswith('neo4j.') for m in sys.modules), 'eager'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
