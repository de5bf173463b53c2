"""GraphStore adapters of the vault, chosen by the scheme of ``settings.graph.url``.

``sqlite:///path`` is the embedded default. A Neo4j adapter registers ``bolt``
(and ``neo4j``) here when it exists; the contract suite in
tests/contract/test_graph_store.py is what it has to pass.
"""

from __future__ import annotations

from shared.ports.graph import GraphStore
from shared.registry import Registry, scheme_of
from shared.settings import GraphSettings

GRAPH_STORES = Registry[GraphStore]("graph store")
GRAPH_STORES.register("sqlite", "services.vault.stores.sqlite_graph:SqliteGraphStore.from_settings")


def create_graph_store(settings: GraphSettings, dimension: int) -> GraphStore:
    """The adapter named by the URL scheme; ConfigError for an unknown one."""
    return GRAPH_STORES.create(scheme_of(settings.url), settings, dimension)


__all__ = ["GRAPH_STORES", "create_graph_store"]
