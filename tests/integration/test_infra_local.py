"""The local infra launcher (infra/local/memgrid_infra.py) and the servers it runs.

Launcher behaviour (port conflicts, status, env) is checked without any server. The
round trips use the real clients (kafka-python, neo4j, minio) against the servers that
`make infra-up` started; each is skipped when its server is not listening or its client
package is not installed. With MGINFRA_TEST_START=1 this module starts the servers itself
(installing them on first use, several minutes) and stops the ones it started.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "local" / "memgrid_infra.py"
sys.path.insert(0, str(SCRIPT.parent))

from mginfra.kafka import Kafka  # noqa: E402
from mginfra.minio import MinIO  # noqa: E402
from mginfra.neo4j import Neo4j  # noqa: E402

pytestmark = pytest.mark.integration


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Private data/cache dirs and free ports, so nothing touches real servers."""
    return {
        "MGINFRA_DATA_DIR": str(tmp_path / "data"),
        "MGINFRA_CACHE_DIR": str(tmp_path / "cache"),
        "MGINFRA_KAFKA_PORT": str(free_port()),
        "MGINFRA_KAFKA_CONTROLLER_PORT": str(free_port()),
        "MGINFRA_NEO4J_BOLT_PORT": str(free_port()),
        "MGINFRA_MINIO_PORT": str(free_port()),
        "MGINFRA_MINIO_CONSOLE_PORT": str(free_port()),
    }


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- launcher


def test_up_refuses_a_busy_port_and_names_it(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env["MGINFRA_KAFKA_PORT"] = str(port)
        result = run_script("up", "kafka", env=env)
    assert result.returncode == 1
    assert f"port 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "cache" / "kafka").exists(), "checked the port before installing"


def test_status_and_down_when_nothing_runs(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    status = run_script("status", env=env)
    assert status.returncode == 1
    for name in ("kafka", "neo4j", "minio"):
        assert any(
            line.startswith(name) and " stopped " in line for line in status.stdout.splitlines()
        ), status.stdout
    down = run_script("down", env=env)
    assert down.returncode == 0
    assert down.stdout.count("not running") == 3


def test_unknown_server_is_an_error(tmp_path: Path) -> None:
    result = run_script("up", "redis", env=isolated_env(tmp_path))
    assert result.returncode == 1
    assert "unknown server" in result.stderr


def test_env_exports_only_settings_the_app_knows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app refuses unknown MEMGRID_* variables: every export must be a real setting."""
    from shared.settings import Settings

    result = run_script("env", env=isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines()
    )
    assert {"MEMGRID_BUS__URL", "MEMGRID_GRAPH__URL", "MEMGRID_BLOB__URL"} <= exports.keys()
    for key, value in exports.items():
        monkeypatch.setenv(key, value.strip("'"))
    settings = Settings(data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.bus.url.startswith("kafka://127.0.0.1:")
    assert settings.graph.url.startswith("bolt://127.0.0.1:")
    assert settings.blob.url == "s3://memgrid"


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def servers() -> Iterator[None]:
    """Starts the servers when MGINFRA_TEST_START=1 and stops those it started."""
    if os.environ.get("MGINFRA_TEST_START") != "1":
        yield
        return
    started = [s.name for s in (Kafka(), Neo4j(), MinIO()) if s.pid() is None]
    result = run_script("up")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield
    finally:
        if started:
            run_script("down", *started)


def need(port: int, name: str) -> None:
    if not listening(port):
        pytest.skip(f"{name}: nothing listens on 127.0.0.1:{port} (run `make infra-up`)")


@pytest.mark.timeout(900)
def test_kafka_produce_consume_round_trip(servers: None) -> None:
    kafka = pytest.importorskip("kafka")
    admin_mod = pytest.importorskip("kafka.admin")
    server = Kafka()
    need(server.port(), "kafka")
    bootstrap = server.connection()["bootstrap_servers"]
    topic = f"infra-test-{uuid.uuid4().hex[:10]}"
    admin = admin_mod.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([admin_mod.NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
        sent = [f"message {i}".encode() for i in range(5)]
        for value in sent:
            producer.send(topic, key=b"k", value=value).get(timeout=30)
        producer.close()
        consumer = kafka.KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"g-{topic}",
            auto_offset_reset="earliest",
            consumer_timeout_ms=20_000,
        )
        received: list[bytes] = []
        for message in consumer:
            received.append(message.value)
            if len(received) == len(sent):
                break
        consumer.commit()
        consumer.close()
        assert received == sent
    finally:
        admin.delete_topics([topic])
        admin.close()


@pytest.mark.timeout(900)
def test_neo4j_vector_and_fulltext_indexes(servers: None) -> None:
    neo4j = pytest.importorskip("neo4j")
    server = Neo4j()
    need(server.port(), "neo4j")
    conn = server.connection()
    auth = (conn["user"], conn["password"]) if conn["auth"] else None
    label = f"InfraTest{uuid.uuid4().hex[:8]}"
    vec, ft = f"{label}_vec", f"{label}_ft"
    with neo4j.GraphDatabase.driver(conn["url"], auth=auth) as driver, driver.session() as s:
        try:
            s.run(
                f"CREATE VECTOR INDEX {vec} FOR (n:{label}) ON (n.embedding) OPTIONS "
                "{indexConfig: {`vector.dimensions`: 4, `vector.similarity_function`: 'cosine'}}"
            ).consume()
            s.run(f"CREATE FULLTEXT INDEX {ft} FOR (n:{label}) ON EACH [n.text]").consume()
            s.run("CALL db.awaitIndexes(120)").consume()
            rows = [
                {"id": 1, "text": "the quick brown fox", "e": [1.0, 0.0, 0.0, 0.0]},
                {"id": 2, "text": "lazy dogs sleep", "e": [0.0, 1.0, 0.0, 0.0]},
                {"id": 3, "text": "foxes and dogs", "e": [0.7, 0.7, 0.0, 0.0]},
            ]
            s.run(
                f"UNWIND $rows AS r CREATE (:{label} {{id: r.id, text: r.text, embedding: r.e}})",
                rows=rows,
            ).consume()
            deadline = time.monotonic() + 30  # index updates are applied asynchronously
            while True:
                hits = s.run(
                    "CALL db.index.vector.queryNodes($index, 2, [0.9, 0.1, 0.0, 0.0]) "
                    "YIELD node, score RETURN node.id AS id, score",
                    index=vec,
                ).data()
                if len(hits) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert [h["id"] for h in hits] == [1, 3]
            assert hits[0]["score"] > hits[1]["score"]
            text_hits = s.run(
                "CALL db.index.fulltext.queryNodes($index, 'fox*') YIELD node RETURN node.id AS id",
                index=ft,
            ).data()
            assert sorted(h["id"] for h in text_hits) == [1, 3]
        finally:
            s.run(f"MATCH (n:{label}) DETACH DELETE n").consume()
            s.run(f"DROP INDEX {vec} IF EXISTS").consume()
            s.run(f"DROP INDEX {ft} IF EXISTS").consume()


@pytest.mark.timeout(900)
def test_minio_put_get(servers: None) -> None:
    minio = pytest.importorskip("minio")
    server = MinIO()
    need(server.port(), "minio")
    conn = server.connection()
    client = minio.Minio(
        conn["url"].removeprefix("http://"),
        access_key=conn["access_key"],
        secret_key=conn["secret_key"],
        secure=False,
    )
    assert client.bucket_exists(conn["bucket"]), "the launcher creates the default bucket"
    name = f"infra-test/{uuid.uuid4().hex}"
    payload = os.urandom(64 * 1024)
    client.put_object(conn["bucket"], name, io.BytesIO(payload), len(payload))
    try:
        response = client.get_object(conn["bucket"], name)
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
    finally:
        client.remove_object(conn["bucket"], name)
