"""``memgrid setup``: creates what a distributed deployment shares, before it serves.

Three steps, each idempotent (run on every install and upgrade by the Helm
chart's setup Job, infra/helm/memgrid/templates/setup-job.yaml):

* ``topics``: every topic declared in shared.topics (partitions, retention,
  compaction) on the Kafka of ``bus.url``; existing topics are left as they are;
* ``graph``: the Neo4j constraints and indexes of services/vault/stores/neo4j_schema.py
  (through the vault's store, which also waits for the indexes to come ONLINE);
* ``blob``: the bucket of ``blob.url`` (``s3://bucket``).

The services would create the same on first use; doing it here first means an
upgrade's new topics and indexes exist before any new consumer or vault starts,
and a missing permission or a wrong address fails the release, not a pod later.
A dependency that is not reachable yet (the bundled servers of a trial install
start together with the Job) is retried until ``--wait-s`` runs out.
Exit 0: done; 2: configuration error; 3: a dependency stayed unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError, Unavailable
from shared.settings import BlobSettings, BusSettings, GraphSettings, Settings

STEPS = ("topics", "graph", "blob")


def create_topics(bus: BusSettings) -> list[str]:
    """Creates the declared topics that are missing; returns the names created."""
    from shared.registry import scheme_of
    from shared.topics import create_missing_topics, topic_specs

    if scheme_of(bus.url) != "kafka":
        raise ConfigError(f"MEMGRID_BUS__URL {bus.url!r}: setup needs a kafka:// bus")
    return create_missing_topics(bus, topic_specs(bus), client="setup")


def create_graph_schema(graph: GraphSettings) -> None:
    """Neo4j constraints and indexes, through the vault's own store so that the
    statements are the ones it checks at start-up."""
    from services.vault.embedders import DIMENSION
    from services.vault.stores import create_graph_store
    from shared.registry import scheme_of

    if scheme_of(graph.url) == "sqlite":
        raise ConfigError(f"MEMGRID_GRAPH__URL {graph.url!r}: setup needs a Neo4j (bolt://) URL")
    # Every registered embedder is all-MiniLM-L6-v2 sized (the hashing one matches
    # it on purpose), so DIMENSION names the vector index the vault will look for.
    store = create_graph_store(graph, DIMENSION)
    try:
        store.ping()  # reaches Neo4j, then creates the schema and waits for the indexes
    finally:
        store.close()


def create_bucket(blob: BlobSettings) -> None:
    """The S3 bucket of ``blob.url`` (the store creates it when it is missing)."""
    from shared.adapters import create_blob_store
    from shared.registry import scheme_of

    if scheme_of(blob.url) != "s3":
        raise ConfigError(f"MEMGRID_BLOB__URL {blob.url!r}: setup needs an s3:// URL")
    create_blob_store(blob).close()


@dataclass
class Setup:
    """The steps, with their actions injectable (the unit tests pass fakes)."""

    settings: Settings
    topics: Callable[[BusSettings], list[str]] = create_topics
    graph: Callable[[GraphSettings], None] = create_graph_schema
    blob: Callable[[BlobSettings], None] = create_bucket
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def run(self, steps: Sequence[str] = STEPS, wait_s: float = 0.0, retry_s: float = 5.0) -> None:
        """Runs ``steps`` in order; each is retried while its dependency is
        Unavailable, until ``wait_s`` seconds after the start (then it raises)."""
        deadline = self.clock() + wait_s
        for step in steps:
            action: Callable[[], Any] = {
                "topics": lambda: self.topics(self.settings.bus),
                "graph": lambda: self.graph(self.settings.graph),
                "blob": lambda: self.blob(self.settings.blob),
            }[step]
            attempt = 1
            while True:
                try:
                    result = action()
                    break
                except Unavailable as exc:
                    if self.clock() + retry_s > deadline:
                        raise
                    self.log(f"setup {step}: {exc.detail} (attempt {attempt}, retrying)")
                    attempt += 1
                    self.sleep(retry_s)
            if step == "topics":
                created = ", ".join(result) or "none missing"
                self.log(f"setup topics: created {created}")
            else:
                self.log(f"setup {step}: ready")


def _steps(value: str) -> list[str]:
    steps = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        named = ", ".join(unknown) or "(none given)"
        raise argparse.ArgumentTypeError(f"unknown step(s) {named}; choose from {', '.join(STEPS)}")
    return steps


def _setup(args: argparse.Namespace) -> int:
    from shared.logging_setup import setup_logging
    from shared.settings import load_settings

    settings = load_settings()
    setup_logging(settings, "setup")
    try:
        Setup(settings).run(args.only, wait_s=args.wait_s, retry_s=args.retry_s)
    except Unavailable as exc:
        print(f"memgrid: setup failed: {exc.detail}", file=sys.stderr)
        return 3
    return 0


def add_parser(sub: Any) -> None:
    setup = sub.add_parser(
        "setup",
        help="create Kafka topics, Neo4j constraints and indexes, the S3 bucket (idempotent)",
        description="Creates what the services share, from the MEMGRID_* settings "
        "(bus, graph, blob). Exit 0: done; 2: configuration error; 3: a dependency "
        "stayed unreachable.",
    )
    setup.add_argument(
        "--only",
        type=_steps,
        default=list(STEPS),
        metavar="STEPS",
        help=f"comma-separated steps, from {', '.join(STEPS)} (default: all, in that order)",
    )
    setup.add_argument(
        "--wait-s",
        type=float,
        default=300.0,
        help="keep retrying unreachable dependencies this long (default 300)",
    )
    setup.add_argument(
        "--retry-s", type=float, default=5.0, help="pause between attempts (default 5)"
    )
    setup.set_defaults(fn=_setup)
