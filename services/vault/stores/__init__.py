"""GraphStore adapters of the vault, chosen by the scheme of ``settings.graph.url``.

``sqlite:///path`` is the embedded default; ``bolt://host:port`` (or ``neo4j://``,
and their ``+s`` / ``+ssc`` TLS forms) selects Neo4j. Factories are "module:attr"
strings, so the neo4j driver is imported only when Neo4j is chosen. Every adapter
passes the contract suite in tests/contract/test_graph_store.py.
"""

from __future__ import annotations

from shared.ports.graph import GraphStore
from shared.registry import Registry, scheme_of
from shared.settings import GraphSettings

GRAPH_STORES = Registry[GraphStore]("graph store")
GRAPH_STORES.register("sqlite", "services.vault.stores.sqlite_graph:SqliteGraphStore.from_settings")
for _scheme in ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"):
    GRAPH_STORES.register(
        _scheme, "services.vault.stores.neo4j_graph:Neo4jGraphStore.from_settings"
    )


def create_graph_store(settings: GraphSettings, dimension: int) -> GraphStore:
    """The adapter named by the URL scheme; ConfigError for an unknown one."""
    return GRAPH_STORES.create(scheme_of(settings.url), settings, dimension)


__all__ = ["GRAPH_STORES", "create_graph_store"]
