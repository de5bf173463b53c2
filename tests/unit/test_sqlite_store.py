"""What is particular to the SQLite GraphStore (the shared contract is in tests/contract)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.vault.stores import GRAPH_STORES, create_graph_store
from services.vault.stores.sqlite_graph import SqliteGraphStore, sqlite_path
from shared.errors import ConfigError
from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.settings import GraphSettings, Settings
from tests.contract.graph_support import DIM, make_cube, unit, write_cubes

pytestmark = pytest.mark.unit


def test_url_forms() -> None:
    assert sqlite_path("sqlite:///rel/graph.db") == "rel/graph.db"
    assert sqlite_path("sqlite:////abs/graph.db") == "/abs/graph.db"
    assert sqlite_path("sqlite://") == ":memory:"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    for bad in ("sqlite://host/x.db", "bolt://x", "graph.db"):
        with pytest.raises(ConfigError):
            sqlite_path(bad)


def test_registry_picks_by_scheme(tmp_path: Path) -> None:
    assert {"sqlite", "bolt", "neo4j"} <= set(GRAPH_STORES.names())
    with pytest.raises(ConfigError, match=r"known: .*sqlite"):
        create_graph_store(GraphSettings(url="nosuch://127.0.0.1:7687"), DIM)
    with pytest.raises(ConfigError):
        create_graph_store(GraphSettings(url="graph.db"), DIM)
    settings = Settings(data_dir=tmp_path)
    store = create_graph_store(settings.graph, DIM)
    assert isinstance(store, GraphStore)
    store.close()
    assert (tmp_path / "graph.db").exists()


def test_data_survives_reopening_but_not_a_new_dimension(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    rng = np.random.default_rng(1)
    store = SqliteGraphStore(path, DIM)
    cube = make_cube("t", "ns", "persisted words")
    vec = unit(rng)
    write_cubes(store, [cube], [vec])
    store.close()
    again = SqliteGraphStore(path, DIM)
    assert again.get_cube("t", cube.id) == cube
    assert [h.cube_id for h in again.vector_search("t", ["ns"], vec, 1)] == [cube.id]
    assert [h.cube_id for h in again.text_search("t", ["ns"], "persisted", 1)] == [cube.id]
    again.close()
    with pytest.raises(ConfigError, match="dimensional"):
        SqliteGraphStore(path, DIM * 2)


def test_writes_from_another_connection_are_seen(tmp_path: Path) -> None:
    """A CLI writing next to a running server: the vector cache must notice."""
    path = str(tmp_path / "g.db")
    rng = np.random.default_rng(2)
    server, cli = SqliteGraphStore(path, DIM), SqliteGraphStore(path, DIM)
    first = make_cube("t", "ns", "first")
    write_cubes(server, [first], [unit(rng)])
    assert len(server.vector_search("t", ["ns"], unit(rng), 10)) == 1  # cache loaded
    second = make_cube("t", "ns", "second")
    vec = unit(rng)
    write_cubes(cli, [second], [vec])
    assert server.vector_search("t", ["ns"], vec, 1)[0].cube_id == second.id
    server.close()
    cli.close()


def test_bad_embeddings_are_refused_before_writing() -> None:
    store = SqliteGraphStore(":memory:", DIM)
    cube = make_cube("t", "ns")
    for bad in (np.ones(DIM + 1), np.full(DIM, np.nan)):
        with pytest.raises(ValueError):
            store.write(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=bad)]))
    assert store.get_cube("t", cube.id) is None
    with pytest.raises(ValueError):
        store.vector_search("t", ["ns"], np.ones(DIM + 1), 3)
    assert store.vector_search("t", ["ns"], np.zeros(DIM), 3) == []
    store.close()


def test_embeddings_are_normalised_on_write() -> None:
    store = SqliteGraphStore(":memory:", DIM)
    cube = make_cube("t", "ns")
    store.write(WriteBatch(cubes=[CubeWrite(cube=cube, embedding=np.full(DIM, 3.0))]))
    hit = store.vector_search("t", ["ns"], np.ones(DIM), 1)[0]
    assert hit.score == pytest.approx(1.0, abs=1e-6)
    store.close()


def test_edges_need_a_known_cube_in_one_tenant() -> None:
    from shared.errors import BadRequest
    from shared.schemas.memcube import Edge, EdgeKind

    store = SqliteGraphStore(":memory:", DIM)
    a, b = make_cube("ta", "ns"), make_cube("tb", "ns")
    write_cubes(store, [a, b])
    with pytest.raises(BadRequest):
        store.write(WriteBatch(edges=[Edge(kind=EdgeKind.DERIVED_FROM, src="x@1", dst="y@1")]))
    with pytest.raises(BadRequest):
        store.write(WriteBatch(edges=[Edge(kind=EdgeKind.DERIVED_FROM, src=a.ref, dst=b.ref)]))
    store.close()
