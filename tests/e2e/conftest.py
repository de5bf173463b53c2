"""Fixtures of the e2e suite: real servers, the services as separate processes.

Servers: by default a private set (Kafka, Neo4j, MinIO on free ports, data in
a temporary directory) started through infra/local, so that the fault tests
may stop and restart them without disturbing anybody, and stopped at the end.
It needs the servers installed in infra's cache (``make infra-install``);
otherwise the suite is skipped, saying so. ``E2E_INFRA=external`` uses the
servers that the caller's MGINFRA_* variables describe (the default ports of
``make infra-up``) instead, and skips the tests that stop servers.

Services: vault, scheduler, governance and interface, each a process started
by the launcher of ``make run-distributed`` on free ports, with the hashing
embedder (the MiniLM model is not what these tests are about).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.otlp_sink import OtlpSink
from tests.e2e.support import (
    Collector,
    GraphProbe,
    Infra,
    Stack,
    Tenant,
    free_port,
    load_launcher,
    reachable,
)

EXTERNAL = os.environ.get("E2E_INFRA", "private") == "external"


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    for module in ("kafka", "faust", "neo4j"):
        pytest.importorskip(module)
    if EXTERNAL:
        servers = Infra(dict(os.environ), private=False)
        env = servers.settings_env()
        kafka = env["MEMGRID_BUS__URL"].split("://", 1)[1].split(",")[0]
        bolt = env["MEMGRID_GRAPH__URL"].split("://", 1)[1]
        for name, addr in (("Kafka", kafka), ("Neo4j", bolt)):
            host, _, port = addr.rpartition(":")
            if not reachable(host, int(port)):
                pytest.skip(f"E2E_INFRA=external but {name} is not reachable at {addr}")
        yield servers
        return
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the e2e suite runs real Kafka and Neo4j (JDK 17)")
    servers = Infra.private_set(tmp_path_factory.mktemp("infra"))
    missing = [s for s in ("kafka", "neo4j", "minio") if s not in servers.installed()]
    if missing and os.environ.get("E2E_INFRA_INSTALL") != "1":
        pytest.skip(
            f"{', '.join(missing)} not installed in infra/local's cache: run `make infra-install`"
            " (or set E2E_INFRA_INSTALL=1 to let the suite install them)"
        )
    try:
        servers.run("up")
    except RuntimeError as exc:
        pytest.skip(f"could not start private servers: {exc}")
    try:
        yield servers
    finally:
        servers.run("down")


@pytest.fixture(scope="session")
def settings_env(infra: Infra) -> dict[str, str]:
    return infra.settings_env()


@pytest.fixture(scope="session")
def otlp_sink() -> Iterator[OtlpSink]:
    """Where every process of the stack exports its spans (OTLP over HTTP)."""
    sink = OtlpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def stack(
    infra: Infra,
    settings_env: dict[str, str],
    otlp_sink: OtlpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    launcher = load_launcher()
    run_dir: Path = tmp_path_factory.mktemp("run")
    # free_port releases the port it found, so two calls can return the same one.
    ports: dict[str, int] = {}
    for name in launcher.SERVICES:
        while (port := free_port()) in ports.values():
            pass
        ports[name] = port
    cfg = launcher.Config(
        run_dir=run_dir,
        python=sys.executable,
        host="127.0.0.1",
        ports=ports,
        infra_env=settings_env,
        extra_env={
            "MEMGRID_EMBEDDER__BACKEND": "hashing",
            # A unique app id per run: a fresh consumer group and table, so a
            # shared (external) Kafka's history does not have to be replayed.
            "MEMGRID_SCHEDULER__APP_ID": f"e2e-scheduler-{run_dir.name}",
            "MEMGRID_GOVERNANCE__APP_ID": f"e2e-governance-{run_dir.name}",
            # Outbox retries find Kafka again quickly after its restart.
            "MEMGRID_BUS__PUBLISH_TIMEOUT_S": "5",
            # The trainer process: the tiny model, trained in process (no Ray
            # cluster in the e2e stack), hyperparameters that memorise it fast.
            "MEMGRID_INFERENCE__MODEL": "tiny",
            "MEMGRID_TRAINER__RUNNER": "inline",
            "MEMGRID_TRAINER__LEARNING_RATE": "0.01",
            "MEMGRID_TRAINER__EPOCHS": "30",
            "MEMGRID_TRAINER__BATCH_SIZE": "4",
            "MEMGRID_TRAINER__LORA_R": "8",
            "MEMGRID_TRAINER__LORA_ALPHA": "16",
            "MEMGRID_TRAINER__LORA_DROPOUT": "0",
            "MEMGRID_TRAINER__BASE_SAMPLES": "0",
            "MEMGRID_TRAINER__MAX_CONTROL_PPL_INCREASE": "1.0",
            # Every process exports its spans over OTLP to the test's in-memory
            # receiver, so that test_tracing can follow one trace across them.
            "MEMGRID_TELEMETRY__EXPORTER": "otlp",
            "MEMGRID_TELEMETRY__OTLP_ENDPOINT": otlp_sink.endpoint,
        },
        start_timeout_s=240.0,
    )
    cfg.save()
    stack = Stack(launcher, cfg)
    try:
        stack.start(*launcher.SERVICES)
        yield stack
    finally:
        stack.stop(*reversed(launcher.SERVICES))


@pytest.fixture
def tenant(stack: Stack) -> Iterator[Tenant]:
    t = Tenant(stack.api, stack.admin_key)
    yield t
    t.close()


@pytest.fixture(scope="session")
def collector(stack: Stack, settings_env: dict[str, str]) -> Iterator[Collector]:
    topics = ["memory.created", "memory.accessed", "memory.promoted", "memgrid.deadletter"]
    c = Collector(settings_env["MEMGRID_BUS__URL"], topics)
    yield c
    c.close()


@pytest.fixture(scope="session")
def graph(settings_env: dict[str, str]) -> Iterator[GraphProbe]:
    probe = GraphProbe(settings_env)
    yield probe
    probe.close()


@pytest.fixture
def private_infra(infra: Infra) -> Infra:
    if not infra.private:
        pytest.skip("stops and restarts servers: runs only on the suite's private set")
    return infra
