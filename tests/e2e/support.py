"""Helpers of the e2e suite: private infra servers, service processes, an API
client, an event collector and a look into the graph store.

The servers and services are real processes started the way an operator
starts them: servers through infra/local/memgrid_infra.py, services through
infra/local/distributed.py (the launcher behind ``make run-distributed``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from shared.schemas.events import EventEnvelope

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "local" / "memgrid_infra.py"
SERVERS = ("kafka", "neo4j", "minio")


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "memgrid_distributed", REPO / "infra" / "local" / "distributed.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25
) -> Any:
    """Polls ``check`` until it returns something truthy; AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


class Infra:
    """A set of servers described by MGINFRA_* variables (private or the caller's)."""

    def __init__(self, env: dict[str, str], *, private: bool) -> None:
        self.env = env
        self.private = private

    @classmethod
    def private_set(cls, data_dir: Path) -> Infra:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MGINFRA_")}
        cache = os.environ.get("MGINFRA_CACHE_DIR")
        if cache:
            env["MGINFRA_CACHE_DIR"] = cache
        env.update(
            {
                "MGINFRA_DATA_DIR": str(data_dir),
                "MGINFRA_KAFKA_PORT": str(free_port()),
                "MGINFRA_KAFKA_CONTROLLER_PORT": str(free_port()),
                "MGINFRA_NEO4J_BOLT_PORT": str(free_port()),
                "MGINFRA_MINIO_PORT": str(free_port()),
                "MGINFRA_MINIO_CONSOLE_PORT": str(free_port()),
            }
        )
        return cls(env, private=True)

    def run(self, action: str, *servers: str, timeout_s: float = 900) -> str:
        result = subprocess.run(
            [sys.executable, str(INFRA), action, *servers],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"memgrid_infra.py {action} {' '.join(servers)} failed:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        return result.stdout

    def installed(self) -> list[str]:
        out = subprocess.run(
            [sys.executable, str(INFRA), "status"], env=self.env, capture_output=True, text=True
        ).stdout
        return [
            s
            for s in SERVERS
            if any(ln.startswith(s) and "(installed)" in ln for ln in out.splitlines())
        ]

    def settings_env(self) -> dict[str, str]:
        """The MEMGRID_* settings of these servers."""
        out = self.run("env")
        env = {}
        for line in out.splitlines():
            parts = shlex.split(line)
            if len(parts) == 2 and parts[0] == "export":
                key, _, value = parts[1].partition("=")
                env[key] = value
        return env


class Stack:
    """The four services as processes, managed with the launcher."""

    def __init__(self, launcher: ModuleType, cfg: Any) -> None:
        self.launcher = launcher
        self.cfg = cfg

    @property
    def api(self) -> str:
        return str(self.cfg.url("interface"))

    def url(self, service: str) -> str:
        return str(self.cfg.url(service))

    @property
    def admin_key(self) -> str:
        return str(self.launcher.load_secrets(self.cfg.run_dir)["admin_key"])

    def start(self, *services: str) -> None:
        for service in services:
            self.launcher.start_service(self.cfg, service)

    def stop(self, *services: str, kill: bool = False) -> None:
        for service in services:
            self.launcher.stop_service(self.cfg, service, kill=kill)

    def pid(self, service: str) -> int | None:
        pid: int | None = self.launcher.running_pid(self.cfg, service)
        return pid

    def log(self, service: str) -> str:
        return str(self.launcher.tail(self.cfg.run_dir / f"{service}.log", 60))

    def audit_entries(self) -> list[dict[str, Any]]:
        path = self.cfg.run_dir / "governance" / "governance" / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


class Tenant:
    """A tenant with one namespace, driven through the public API."""

    def __init__(self, api: str, admin_key: str, timeout_s: float = 60.0) -> None:
        self.http = httpx.Client(base_url=api, timeout=timeout_s)
        r = self.http.post(
            "/v1/tenants",
            json={"name": f"e2e-{uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
        assert r.status_code == 201, r.text
        self.id: str = r.json()["id"]
        self.headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
        r = self.http.post("/v1/namespaces", json={"name": "main"}, headers=self.headers)
        assert r.status_code == 201, r.text
        self.namespace: str = r.json()["id"]

    def add_messages(
        self, messages: Sequence[tuple[str, str]], metadata: dict[str, Any] | None = None
    ) -> httpx.Response:
        body = {
            "messages": [{"id": mid, "role": "user", "content": text} for mid, text in messages],
            "metadata": metadata or {},
        }
        return self.http.post(
            f"/v1/namespaces/{self.namespace}/memories", json=body, headers=self.headers
        )

    def search(self, query: str, top_k: int = 5) -> httpx.Response:
        body = {"query": query, "namespaces": [self.namespace], "top_k": top_k}
        return self.http.post("/v1/search", json=body, headers=self.headers)

    def close(self) -> None:
        self.http.close()


class Collector:
    """A test consumer group on Kafka that keeps every event once (dedupe by event id)."""

    def __init__(self, bus_url: str, topics: Sequence[str]) -> None:
        from shared.adapters.bus_kafka import KafkaEventBus
        from shared.settings import BusSettings

        self.bus = KafkaEventBus(BusSettings(url=bus_url, client_id="e2e-collector"))
        self.group = f"e2e-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self.events: dict[str, EventEnvelope] = {}
        self.deliveries = 0
        self.sub = self.bus.subscribe(self.group, topics, self._handle)

    def _handle(self, event: EventEnvelope) -> None:
        with self._lock:
            self.deliveries += 1
            self.events.setdefault(event.id, event)

    def of(self, topic: str, tenant: str | None = None) -> list[EventEnvelope]:
        with self._lock:
            return [
                e
                for e in self.events.values()
                if e.topic == topic and (tenant is None or e.tenant == tenant)
            ]

    def close(self) -> None:
        self.bus.close()


class GraphProbe:
    """Reads cubes straight from Neo4j, to check what the API acknowledged is there."""

    def __init__(self, env: dict[str, str]) -> None:
        import neo4j

        self.driver = neo4j.GraphDatabase.driver(
            env["MEMGRID_GRAPH__URL"],
            auth=(env.get("MEMGRID_GRAPH__USER", "neo4j"), env.get("MEMGRID_GRAPH__PASSWORD", "")),
        )

    def cubes(self, tenant: str, namespace: str) -> list[dict[str, Any]]:
        """Every stored version in the namespace: id, version and sources."""
        records, _, _ = self.driver.execute_query(
            "MATCH (c:MemCube) WHERE c.tenant = $t AND c.namespace = $ns"
            " RETURN c.id AS id, c.version AS version, c.cube_json AS cube",
            t=tenant,
            ns=namespace,
            database_=os.environ.get("E2E_NEO4J_DATABASE", "neo4j"),
        )
        return [
            {"id": r["id"], "version": r["version"], "sources": json.loads(r["cube"])["sources"]}
            for r in records
        ]

    def close(self) -> None:
        self.driver.close()
