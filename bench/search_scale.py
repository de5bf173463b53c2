"""Ingest rate and search latency at 10k and 100k memories in one namespace.

Memories are synthetic but varied sentences (people, places, activities, times)
ingested through the public API in requests of 1,000 messages; searches are
natural-language questions over the same vocabulary, through the API too, so the
figures include HTTP handling, embedding the query, dense + keyword retrieval and
fusion. Each scale reports the median over several rounds of queries.

    python bench/search_scale.py --sizes 10000 100000 --rounds 3 --queries 100
    python bench/search_scale.py --backend neo4j     # the Neo4j of `make infra-up`

On Neo4j a namespace past ``graph.shard_min_vectors`` (10,000) is moved to a
vector index of its own in the background (services/vault/stores/neo4j_shards.py);
the benchmark waits for that before it measures, and prints how long it took.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from common import embedded_client, median, percentile

NAMES = [
    "Ana",
    "Bo",
    "Chen",
    "Dara",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kemal",
    "Lena",
    "Mateo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
]
PLACES = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Kyoto",
    "Lima",
    "Austin",
    "Porto",
    "Hanoi",
    "Tbilisi",
    "Quebec",
    "Cork",
    "Busan",
    "Leeds",
    "Perth",
    "Dakar",
    "Split",
    "Cusco",
    "Bergen",
]
VERBS = [
    "visited",
    "moved to",
    "gave a talk in",
    "bought a flat in",
    "ran a marathon in",
    "opened a bakery in",
    "studied painting in",
    "adopted a dog in",
    "started a job in",
    "planted a garden in",
    "learned to sail in",
    "joined a choir in",
]
WHEN = [
    "last week",
    "yesterday",
    "in spring",
    "two years ago",
    "on Friday",
    "last month",
    "this weekend",
    "in 2021",
    "after the conference",
    "before the holidays",
]
EXTRA = [
    "with a friend",
    "for the first time",
    "despite the rain",
    "on a budget",
    "to celebrate a promotion",
    "after a long break",
    "with the kids",
    "alone",
]


def sentence(rng: random.Random, i: int) -> str:
    return (
        f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(PLACES)} {rng.choice(WHEN)} "
        f"{rng.choice(EXTRA)} (note {i})."
    )


def question(rng: random.Random) -> str:
    return f"When did {rng.choice(NAMES)} go to {rng.choice(PLACES)} {rng.choice(EXTRA)}?"


def ingest(client: Any, ns: str, start: int, count: int, rng: random.Random) -> float:
    t0 = time.perf_counter()
    for base in range(start, start + count, 1000):
        n = min(1000, start + count - base)
        msgs = [
            {"id": f"m{base + j}", "role": "user", "content": sentence(rng, base + j)}
            for j in range(n)
        ]
        client.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}).raise_for_status()
    return time.perf_counter() - t0


def measure(
    client: Any, ns: str, rounds: int, queries: int, rng: random.Random
) -> dict[str, float]:
    p50s, p95s = [], []
    for _ in range(rounds):
        lat = []
        for _ in range(queries):
            t0 = time.perf_counter()
            r = client.post(
                "/v1/search", json={"query": question(rng), "namespaces": [ns], "top_k": 10}
            )
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
        p50s.append(percentile(lat, 50))
        p95s.append(percentile(lat, 95))
    return {"p50": median(p50s), "p95": median(p95s), "p95_min": min(p95s), "p95_max": max(p95s)}


def wait_for_own_index(password: str, ns: str, size: int, timeout_s: float = 1800) -> float:
    """Neo4j: once a namespace passes graph.shard_min_vectors the store moves it to a
    vector index of its own in the background; searches are measured after that
    (during the move they are correct but ask two indexes). Returns the wait."""
    from neo4j import GraphDatabase

    from shared.settings import GraphSettings

    if size < GraphSettings().shard_min_vectors:
        return 0.0
    t0 = time.perf_counter()
    with GraphDatabase.driver("bolt://127.0.0.1:7687", auth=("neo4j", password)) as driver:
        while time.perf_counter() - t0 < timeout_s:
            rows, _, _ = driver.execute_query(
                "MATCH (n:Namespace {id: $ns}) RETURN n.vector_shard_state AS s", ns=ns
            )
            if rows and rows[0]["s"] == "ready":
                return time.perf_counter() - t0
            if rows and rows[0]["s"] is None and time.perf_counter() - t0 > 120:
                print(f"namespace {ns} has no index of its own after 120 s", flush=True)
                return time.perf_counter() - t0
            time.sleep(1.0)
    raise SystemExit(f"namespace {ns} was not moved to its own index in {timeout_s} s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--embedder", default="minilm-int8")
    ap.add_argument(
        "--backend",
        choices=["sqlite", "neo4j"],
        default="sqlite",
        help="graph store; neo4j uses the server of `make infra-up` (bolt://127.0.0.1:7687)",
    )
    ap.add_argument("--neo4j-password", default="memgrid-dev-password")
    args = ap.parse_args()
    # The scheduler's near-duplicate merge would fold the synthetic sentences (which
    # differ by a name or a number) into fewer cubes: off, so the sizes hold.
    overrides: dict[str, Any] = {
        "embedder": {"backend": args.embedder},
        "scheduler": {"policy": {"merge_threshold": 1.0}},
    }
    if args.backend == "neo4j":
        overrides["graph"] = {"url": "bolt://127.0.0.1:7687", "password": args.neo4j_password}
    rng = random.Random(7)
    print(
        f"backend={args.backend} embedder={args.embedder} rounds={args.rounds} "
        f"queries/round={args.queries}"
    )
    print(
        f"{'memories':>9} {'ingest/s':>9} {'search p50 ms':>14} "
        f"{'search p95 ms':>14} {'p95 range':>14}"
    )
    with embedded_client(**overrides) as client:
        ns = client.post("/v1/namespaces", json={"name": "scale"}).json()["id"]
        have = 0
        for size in sorted(args.sizes):
            secs = ingest(client, ns, have, size - have, rng)
            rate = (size - have) / secs
            have = size
            if args.backend == "neo4j":
                waited = wait_for_own_index(args.neo4j_password, ns, size)
                print(f"{'':>9} (own vector index ready {waited:.0f} s after ingest)", flush=True)
            m = measure(client, ns, args.rounds, args.queries, rng)
            print(
                f"{size:>9} {rate:>9.0f} {m['p50']:>14.1f} {m['p95']:>14.1f} "
                f"{m['p95_min']:>6.1f}-{m['p95_max']:<6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
