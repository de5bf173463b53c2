"""`memgrid setup` (the Helm chart's setup Job) against the real Kafka, Neo4j and MinIO
of infra/local: run as the Job runs it, a process with MEMGRID_* settings, twice.

A dead-letter topic and a bucket of this run's own make the first run create
something for sure on servers that other tests have already used; the second
run must find everything there and change nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from kafka import KafkaAdminClient
from minio import Minio
from neo4j import GraphDatabase

from services.vault.embedders import DIMENSION
from services.vault.stores.neo4j_schema import (
    CONSTRAINTS,
    RANGE_INDEXES,
    TEXT_INDEX,
    vector_index,
)
from shared.settings import BusSettings
from shared.topics import topic_specs
from tests.contract.adapters import reachable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SERVERS = {"Kafka": 9092, "Neo4j": 7687, "MinIO": 9000}
PASSWORD = os.environ.get("MGINFRA_NEO4J_PASSWORD", "memgrid-dev-password")
MINIO_USER = os.environ.get("MGINFRA_MINIO_ROOT_USER", "memgrid")
MINIO_PASSWORD = os.environ.get("MGINFRA_MINIO_ROOT_PASSWORD", "memgrid-dev-password")


@pytest.fixture(autouse=True)
def _servers() -> None:
    down = [name for name, port in SERVERS.items() if not reachable("127.0.0.1", port)]
    if down:
        pytest.skip(f"{', '.join(down)} not running (make infra-up)")


def setup_env(run: str, bus_port: int = 9092) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")}
    env.update(
        {
            "MEMGRID_BUS__URL": f"kafka://127.0.0.1:{bus_port}",
            "MEMGRID_BUS__DEAD_LETTER_TOPIC": f"memgrid.dlq.setup-{run}",
            "MEMGRID_BUS__REPLICATION_FACTOR": "1",
            "MEMGRID_GRAPH__URL": "bolt://127.0.0.1:7687",
            "MEMGRID_GRAPH__PASSWORD": PASSWORD,
            "MEMGRID_BLOB__URL": f"s3://memgrid-setup-{run}",
            "MEMGRID_BLOB__ENDPOINT": "127.0.0.1:9000",
            "MEMGRID_BLOB__SECURE": "false",
            "MEMGRID_BLOB__ACCESS_KEY": MINIO_USER,
            "MEMGRID_BLOB__SECRET_KEY": MINIO_PASSWORD,
        }
    )
    return env


def memgrid_setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "setup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_setup_creates_topics_schema_and_bucket_and_a_second_run_changes_nothing() -> None:
    run = uuid.uuid4().hex[:8]
    env = setup_env(run)
    dlq = env["MEMGRID_BUS__DEAD_LETTER_TOPIC"]
    bucket = env["MEMGRID_BLOB__URL"].removeprefix("s3://")
    minio = Minio("127.0.0.1:9000", MINIO_USER, MINIO_PASSWORD, secure=False)
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092", client_id="setup-test")
    try:
        first = memgrid_setup(env, "--wait-s", "60")
        assert first.returncode == 0, first.stderr
        assert "setup topics: created" in first.stdout and dlq in first.stdout
        assert "setup graph: ready" in first.stdout and "setup blob: ready" in first.stdout

        # Every declared topic exists with its declared partitions.
        specs = topic_specs(BusSettings(dead_letter_topic=dlq))
        described = {t["name"]: t for t in admin.describe_topics([s.name for s in specs])}
        for spec in specs:
            assert described[spec.name]["error_code"] == 0, spec.name
            assert len(described[spec.name]["partitions"]) == spec.partitions, spec.name
        assert minio.bucket_exists(bucket)
        with GraphDatabase.driver("bolt://127.0.0.1:7687", auth=("neo4j", PASSWORD)) as driver:
            names = {r["name"] for r in driver.execute_query("SHOW CONSTRAINTS").records}
            states = {r["name"]: r["state"] for r in driver.execute_query("SHOW INDEXES").records}
        assert {stmt.split()[2] for stmt in CONSTRAINTS} <= names
        # setup waits for its indexes to come ONLINE before it says ready
        ours = [stmt.split()[2] for stmt in RANGE_INDEXES] + [TEXT_INDEX, vector_index(DIMENSION)]
        assert {name: states.get(name) for name in ours} == dict.fromkeys(ours, "ONLINE")

        second = memgrid_setup(env, "--wait-s", "60")
        assert second.returncode == 0, second.stderr
        assert "setup topics: created none missing" in second.stdout
    finally:
        admin.delete_topics([dlq])
        admin.close()
        if minio.bucket_exists(bucket):
            minio.remove_bucket(bucket)


def test_an_unreachable_kafka_fails_the_job_with_exit_3_after_the_wait() -> None:
    from tests.e2e.support import free_port

    env = setup_env(uuid.uuid4().hex[:8], bus_port=free_port())
    env["MEMGRID_BUS__PUBLISH_TIMEOUT_S"] = "1"
    done = memgrid_setup(env, "--only", "topics", "--wait-s", "3", "--retry-s", "1")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "retrying" in done.stdout and "setup failed" in done.stderr
