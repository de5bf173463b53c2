"""GraphStore erasure contract (shared/ports/graph.py): ``erasure_candidates``,
``erase`` and ``get_erasure`` behave the same on every adapter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from shared.ports.graph import CubeWrite, GraphStore, WriteBatch
from shared.schemas.erasure import ERASED, ErasureReport, ErasureSubject, content_free
from shared.schemas.memcube import Edge, EdgeKind, Governance, LifecycleState, MemCube
from tests.contract.adapters import AdapterCase, new_id, params
from tests.contract.graph_support import T0, make_cube, new_version, setup_tenant, unit
from tests.contract.test_graph_store import GRAPH_STORES

pytestmark = pytest.mark.contract


@pytest.fixture(params=params(GRAPH_STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    case: AdapterCase[GraphStore] = request.param
    s = case.build(tmp_path)
    try:
        yield s
    finally:
        s.close()


def person(value: str) -> ErasureSubject:
    return ErasureSubject(kind="person", value=value)


def report(tenant: str, cube_ids: list[str]) -> ErasureReport:
    return ErasureReport(
        id=f"er_{uuid.uuid4().hex}",
        tenant=tenant,
        subject_kind="person",
        subject_digest="0" * 64,
        namespaces=[],
        cube_ids=cube_ids,
        versions_purged=0,
        requested_by="admin",
        created_at=T0,
    )


def write(store: GraphStore, cube: MemCube, vector: np.ndarray | None, old: MemCube | None) -> None:
    batch = WriteBatch(cubes=[CubeWrite(cube=cube, embedding=vector)])
    if old is not None:
        batch.superseded.append((old.id, old.version))
        batch.edges.append(Edge(kind=EdgeKind.VERSION_OF, src=cube.ref, dst=old.ref))
    store.write(batch)


def test_candidates_match_any_version_text_metadata_sources_and_principal(
    store: GraphStore,
) -> None:
    a, b = new_id("ta"), new_id("tb")
    a1, a2, b1 = new_id("ns"), new_id("ns"), new_id("ns")
    setup_tenant(store, a, a1, a2)
    setup_tenant(store, b, b1)
    rng = np.random.default_rng(3)
    # Mentioned only in version 1: older versions count.
    old = make_cube(a, a1, "Zoë Quill moved to Porto")
    write(store, old, unit(rng), None)
    edited = new_version(old, text="someone moved to Porto")
    write(store, edited, unit(rng), old)
    by_meta = make_cube(a, a1, "likes tea", metadata={"speaker": "ZOË QUILL"})
    by_source = make_cube(a, a2, "the invoice").model_copy(update={"sources": ["crm:42"]})
    by_principal = make_cube(a, a2, "a note").model_copy(
        update={"governance": Governance(created_by="agent-7")}
    )
    unrelated = make_cube(a, a1, "Zoe is someone else; quill pens")
    foreign = make_cube(b, b1, "Zoë Quill in another tenant")
    for c in (by_meta, by_source, by_principal, unrelated, foreign):
        write(store, c, unit(rng), None)

    got = store.erasure_candidates(a, [a1, a2], person("zoë quill"))
    assert set(got) == {old.id, by_meta.id}
    assert store.erasure_candidates(a, [a2], person("Zoë Quill")) == []
    assert store.erasure_candidates(a, [a1, a2], ErasureSubject(kind="source", value="crm:42")) == [
        by_source.id
    ]
    assert store.erasure_candidates(
        a, [a1, a2], ErasureSubject(kind="principal", value="agent-7")
    ) == [by_principal.id]
    # Another tenant's cube is never a candidate, even with its namespace named.
    assert store.erasure_candidates(a, [b1], person("Zoë Quill")) == []
    assert store.erasure_candidates(b, [b1], person("Zoë Quill")) == [foreign.id]


def test_erase_purges_every_version_and_index_in_one_write(store: GraphStore) -> None:
    a, b = new_id("ta"), new_id("tb")
    a1, b1 = new_id("ns"), new_id("ns")
    setup_tenant(store, a, a1)
    setup_tenant(store, b, b1)
    rng = np.random.default_rng(5)
    v1 = make_cube(a, a1, "Ivo Marsh lives in Ghent", tags=["ivo"], metadata={"who": "Ivo"})
    vec1 = unit(rng)
    write(store, v1, vec1, None)
    v2 = new_version(v1, text="Ivo Marsh lives in Bruges")
    vec2 = unit(rng)
    write(store, v2, vec2, v1)
    keep = make_cube(a, a1, "Ghent and Bruges are in Flanders")
    vec_keep = unit(rng)
    write(store, keep, vec_keep, None)
    other = make_cube(b, b1, "Ivo Marsh lives in Ghent")
    write(store, other, vec1, None)

    now = T0 + timedelta(days=1)
    tomb = content_free(v2, now).model_copy(update={"version": 3, "updated_at": now})
    batch = WriteBatch(
        cubes=[CubeWrite(cube=tomb)],
        superseded=[(v1.id, 2)],
        edges=[Edge(kind=EdgeKind.VERSION_OF, src=tomb.ref, dst=v2.ref, reason=ERASED)],
    )
    rep = report(a, [v1.id])
    assert store.erase(a, [v1.id], batch, now, rep) == 2

    versions = store.history(a, v1.id)
    assert [c.version for c in versions] == [1, 2, 3]
    for c in versions:
        assert c.text == "" and c.metadata == {} and c.tags == [] and c.sources == []
        assert c.lifecycle.state == LifecycleState.deleted and c.lifecycle.reason == ERASED
        assert store.get_embedding(a, v1.id, c.version) is None
    # Provenance survives: the version edges still resolve.
    assert {e.kind for e in store.edges(a, v1.id)} == {EdgeKind.VERSION_OF}
    # Out of every index: neither the text nor the vector finds it.
    assert store.text_search(a, [a1], "Ivo Marsh", 10) == []
    assert v1.id not in [h.cube_id for h in store.vector_search(a, [a1], vec2, 10)]
    assert v1.id not in [h.cube_id for h in store.vector_search(a, [a1], vec1, 10)]
    assert [h.cube_id for h in store.text_search(a, [a1], "Ghent", 10)] == [keep.id]
    assert store.erasure_candidates(a, [a1], person("Ivo Marsh")) == []
    # The other tenant's copy is untouched.
    assert store.get_cube(b, other.id) == other
    assert [h.cube_id for h in store.text_search(b, [b1], "Ivo Marsh", 10)] == [other.id]
    # The report is stored for its tenant only.
    assert store.get_erasure(a, rep.id) == rep
    assert store.get_erasure(b, rep.id) is None
    # Again: nothing left with content.
    again = report(a, [v1.id])
    assert store.erase(a, [v1.id], WriteBatch(), now, again) == 0


def test_erase_of_another_tenants_ids_changes_nothing(store: GraphStore) -> None:
    a, b = new_id("ta"), new_id("tb")
    a1, b1 = new_id("ns"), new_id("ns")
    setup_tenant(store, a, a1)
    setup_tenant(store, b, b1)
    theirs = make_cube(b, b1, "Ana's secret")
    write(store, theirs, unit(np.random.default_rng(1)), None)
    assert store.erase(a, [theirs.id], WriteBatch(), T0, report(a, [theirs.id])) == 0
    assert store.get_cube(b, theirs.id) == theirs


def test_sqlite_leaves_no_erased_text_in_its_files(tmp_path: Path) -> None:
    """The SQLite adapter's files (database and WAL) no longer hold the text."""
    from services.vault.stores import create_graph_store
    from shared.settings import GraphSettings
    from tests.contract.graph_support import DIM

    store = create_graph_store(GraphSettings(url=f"sqlite:///{tmp_path}/graph.db"), DIM)
    try:
        a, a1 = new_id("ta"), new_id("ns")
        setup_tenant(store, a, a1)
        rng = np.random.default_rng(9)
        secret = "Quillonbrae Fenwick-Ostrava"
        cubes = [make_cube(a, a1, f"{secret} note {i}", tags=[secret]) for i in range(40)]
        for c in cubes:
            write(store, c, unit(rng), None)
        keep = make_cube(a, a1, "unrelated memory")
        write(store, keep, unit(rng), None)
        ids = [c.id for c in cubes]
        now = T0 + timedelta(days=1)
        batch = WriteBatch()
        for c in cubes:
            tomb = content_free(c, now).model_copy(update={"version": 2, "updated_at": now})
            batch.cubes.append(CubeWrite(cube=tomb))
            batch.superseded.append((c.id, 1))
        store.erase(a, ids, batch, now, report(a, ids))
        needle = b"Quillonbrae"
        for f in tmp_path.glob("graph.db*"):
            assert needle not in f.read_bytes().replace(b"\x00", b""), f.name
            assert needle.lower() not in f.read_bytes(), f.name  # FTS5 stores terms lower-cased
        assert store.text_search(a, [a1], "unrelated", 5)[0].cube_id == keep.id
    finally:
        store.close()
