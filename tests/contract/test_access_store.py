"""Contract: the access records (principals, teams, grants as documents; extra API
keys) behave the same on every GraphStore adapter and never cross tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ports.graph import GraphStore
from shared.schemas.api import ApiKeyRecord
from tests.contract.adapters import AdapterCase, new_id, params
from tests.contract.graph_support import T0, setup_tenant
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


def test_access_docs_put_get_list_delete_per_tenant(store: GraphStore) -> None:
    a, b = new_id("ta"), new_id("tb")
    setup_tenant(store, a, new_id("ns"))
    setup_tenant(store, b, new_id("ns"))
    store.put_access_doc(a, "team", "t1", '{"v": 1}')
    store.put_access_doc(a, "team", "t1", '{"v": 2}')  # upsert, not a second row
    store.put_access_doc(a, "grant", "g1", '{"g": 1}')
    assert store.get_access_doc(a, "team", "t1") == '{"v": 2}'
    assert store.list_access_docs(a, "team") == ['{"v": 2}']
    assert store.list_access_docs(a, "grant") == ['{"g": 1}']
    # Another tenant sees nothing of tenant a's records, even by id.
    assert store.get_access_doc(b, "team", "t1") is None
    assert store.list_access_docs(b, "team") == []
    assert store.delete_access_doc(b, "team", "t1") is False
    assert store.delete_access_doc(a, "team", "t1") is True
    assert store.delete_access_doc(a, "team", "t1") is False
    assert store.get_access_doc(a, "team", "t1") is None


def test_extra_api_keys_are_listed_by_principal_and_found_by_prefix(store: GraphStore) -> None:
    a = new_id("ta")
    setup_tenant(store, a, new_id("ns"))
    prefix = new_id("k")
    key = ApiKeyRecord(
        prefix=prefix,
        key_hash="0" * 64,
        tenant=a,
        principal=f"{a}:bot",
        role="agent",
        created_at=T0,
        namespaces=["ns1"],
        permissions=["read"],
    )
    store.put_api_key(key)
    found = store.find_api_key(prefix)
    assert found is not None and found.namespaces == ["ns1"] and found.permissions == ["read"]
    assert [k.prefix for k in store.list_api_keys(a, f"{a}:bot")] == [prefix]
    assert store.list_api_keys(a, f"{a}:other") == []
    store.put_api_key(key.model_copy(update={"revoked": True}))
    again = store.find_api_key(prefix)
    assert again is not None and again.revoked
