"""`memgrid setup` (the Helm chart's setup Job): topics, Neo4j schema, bucket, with fakes."""

from __future__ import annotations

from typing import Any

import pytest

import services.vault.stores as vault_stores
import shared.adapters as shared_adapters
from services import cli_setup
from services.cli import main
from services.vault.embedders import DIMENSION
from shared.errors import ConfigError, Unavailable
from shared.settings import BlobSettings, BusSettings, GraphSettings, Settings
from shared.topics import topic_specs

pytestmark = pytest.mark.unit


def _settings() -> Settings:
    return Settings(
        mode="distributed",
        bus=BusSettings(url="kafka://kafka-a:9092,kafka-b:9093", replication_factor=3),
        graph=GraphSettings(url="bolt://neo4j:7687"),
        blob=BlobSettings(url="s3://memgrid-blobs", endpoint="minio:9000"),
    )


class FakeAdmin:
    """kafka-python's KafkaAdminClient, as much of it as ensure_topics uses."""

    instances: list[FakeAdmin] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.existing = {"memory.created"}
        self.created: dict[str, dict[str, Any]] = {}
        self.closed = False
        FakeAdmin.instances.append(self)

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"name": n, "error_code": 0, "partitions": [{}] * 12}
            if n in self.existing
            else {"name": n, "error_code": 3, "partitions": []}
            for n in names
        ]

    def create_topics(self, request: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.created.update(request)
        return {"topics": [{"name": n, "error_code": 0, "error_message": None} for n in request]}

    def wait_for_topics(self, names: list[str], timeout_ms: int) -> None:
        assert set(names) <= set(self.created)

    def close(self) -> None:
        self.closed = True


def test_topics_step_creates_every_declared_topic_that_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kafka

    FakeAdmin.instances.clear()
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    bus = _settings().bus
    created = cli_setup.create_topics(bus)
    (admin,) = FakeAdmin.instances
    assert admin.kwargs["bootstrap_servers"] == ["kafka-a:9092", "kafka-b:9093"]
    specs = {s.name: s for s in topic_specs(bus)}
    assert set(created) == set(specs) - {"memory.created"}
    assert "memory.created" not in admin.created  # existing topics are left alone
    for name, request in admin.created.items():
        assert request["num_partitions"] == specs[name].partitions
        assert request["replication_factor"] == 3
        assert request["configs"] == specs[name].configs()
    assert bus.dead_letter_topic in admin.created
    assert admin.closed


def test_topics_step_refuses_a_bus_that_is_not_kafka() -> None:
    with pytest.raises(ConfigError, match="kafka://"):
        cli_setup.create_topics(BusSettings(url="memory://"))


def test_graph_step_creates_the_schema_through_the_vault_store_and_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    class FakeStore:
        def ping(self) -> None:
            calls.append("ping")

        def close(self) -> None:
            calls.append("close")

    def fake_create(settings: GraphSettings, dimension: int) -> FakeStore:
        calls.append(f"create {settings.url} {dimension}")
        return FakeStore()

    monkeypatch.setattr(vault_stores, "create_graph_store", fake_create)
    cli_setup.create_graph_schema(GraphSettings(url="bolt://neo4j:7687"))
    assert calls == [f"create bolt://neo4j:7687 {DIMENSION}", "ping", "close"]
    with pytest.raises(ConfigError, match="bolt://"):
        cli_setup.create_graph_schema(GraphSettings(url="sqlite:///tmp/x.db"))


def test_blob_step_creates_the_bucket_and_refuses_local_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []

    class FakeBlobs:
        def close(self) -> None:
            made.append("closed")

    def fake_create(settings: BlobSettings) -> FakeBlobs:
        made.append(settings.url)
        return FakeBlobs()

    monkeypatch.setattr(shared_adapters, "create_blob_store", fake_create)
    cli_setup.create_bucket(BlobSettings(url="s3://memgrid-blobs"))
    assert made == ["s3://memgrid-blobs", "closed"]
    with pytest.raises(ConfigError, match="s3://"):
        cli_setup.create_bucket(BlobSettings(url="file:///var/lib/blobs"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_steps_run_in_order_and_retry_an_unreachable_dependency() -> None:
    clock, done, lines = Clock(), [], []
    failures = {"graph": 2}

    def step(name: str, result: Any = None) -> Any:
        def run(group: Any) -> Any:
            if failures.get(name, 0) > 0:
                failures[name] -= 1
                raise Unavailable(f"{name} down")
            done.append((name, group))
            return result

        return run

    settings = _settings()
    setup = cli_setup.Setup(
        settings,
        topics=step("topics", ["memory.created"]),
        graph=step("graph"),
        blob=step("blob"),
        sleep=clock.sleep,
        clock=clock,
        log=lines.append,
    )
    setup.run(wait_s=60, retry_s=5)
    assert done == [("topics", settings.bus), ("graph", settings.graph), ("blob", settings.blob)]
    assert clock.now == 10  # two pauses before Neo4j answered
    assert lines[0] == "setup topics: created memory.created"
    assert sum("graph down" in line for line in lines) == 2


def test_a_dependency_down_past_the_wait_fails_without_running_later_steps() -> None:
    clock, ran = Clock(), []

    def down(_: Any) -> list[str]:
        raise Unavailable("kafka unreachable")

    setup = cli_setup.Setup(
        _settings(),
        topics=down,
        graph=lambda g: ran.append("graph"),
        blob=lambda b: ran.append("blob"),
        sleep=clock.sleep,
        clock=clock,
        log=lambda line: None,
    )
    with pytest.raises(Unavailable, match="kafka unreachable"):
        setup.run(wait_s=12, retry_s=5)
    assert ran == []
    assert clock.now == 10  # tried at 0, 5, 10; a fourth try would end after the wait


def test_cli_only_runs_the_named_steps_and_reports_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMGRID_BLOB__URL", "file:///tmp/blobs")
    assert main(["setup", "--only", "blob", "--wait-s", "0"]) == 2
    assert "setup needs an s3:// URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["setup", "--only", "topics,schema"])
    assert exc.value.code == 2
    assert "unknown step(s) schema" in capsys.readouterr().err


def test_cli_exits_3_when_a_dependency_stays_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def down(blob: BlobSettings) -> None:
        raise Unavailable("blob store failed on bucket memgrid: connection refused")

    monkeypatch.setattr(cli_setup, "create_bucket", down)
    monkeypatch.setattr(cli_setup.Setup, "__init__", _setup_init_with(blob=down))
    monkeypatch.setenv("MEMGRID_BLOB__URL", "s3://memgrid")
    assert main(["setup", "--only", "blob", "--wait-s", "0"]) == 3
    assert "setup failed: blob store failed on bucket memgrid" in capsys.readouterr().err


def _setup_init_with(**actions: Any) -> Any:
    """Setup's generated __init__ with some actions replaced (defaults bind at class
    creation, so patching the module function alone would not reach them)."""
    original = cli_setup.Setup.__init__

    def init(self: cli_setup.Setup, settings: Settings, **kwargs: Any) -> None:
        original(self, settings, **{**kwargs, **actions})

    return init
