"""Apache Kafka, single node KRaft (combined broker + controller), jars from Maven Central."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

from .common import (
    HERE,
    HOST,
    InfraError,
    Port,
    Server,
    cache_root,
    env,
    env_int,
    fresh_dir,
    java_bin,
    maven_copy_dependencies,
    run_with_progress,
    say,
)

DEFAULT_VERSION = "4.1.2"


class Kafka(Server):
    name = "kafka"
    marker = "-Dmemgrid.infra=kafka"

    def version(self) -> str:
        return env("MGINFRA_KAFKA_VERSION", DEFAULT_VERSION)

    def port(self) -> int:
        return env_int("MGINFRA_KAFKA_PORT", 9092)

    def controller_port(self) -> int:
        return env_int("MGINFRA_KAFKA_CONTROLLER_PORT", 9093)

    def ports(self) -> list[Port]:
        return [Port("kafka broker", self.port()), Port("kafka controller", self.controller_port())]

    # ------------------------------------------------------------------ install
    @property
    def install_dir(self) -> Path:
        return cache_root() / "kafka" / self.version()

    def installed(self) -> bool:
        return (self.install_dir / "INSTALLED").exists()

    def install(self) -> None:
        if not self.version().startswith("4."):
            raise InfraError(
                "MGINFRA_KAFKA_VERSION must be a 4.x release (the log4j2 binding "
                "in infra/local/kafka/pom.xml is for Kafka 4)"
            )
        work = fresh_dir(self.install_dir.with_name(self.install_dir.name + ".partial"))
        maven_copy_dependencies(
            HERE / "kafka" / "pom.xml",
            work,
            {"kafka.version": self.version()},
            "libs",
            f"kafka {self.version()}: resolving jars with Maven",
        )
        jars = list((work / "libs").glob("*.jar"))
        if not any(j.name.startswith("kafka_2.13-") for j in jars):
            raise InfraError(f"kafka install: no kafka_2.13 jar in {work / 'libs'}")
        (work / "INSTALLED").write_text(f"kafka_2.13 {self.version()}, {len(jars)} jars\n")
        if self.install_dir.exists():
            shutil.rmtree(self.install_dir)
        work.rename(self.install_dir)
        say(f"kafka {self.version()}: {len(jars)} jars in {self.install_dir / 'libs'}")

    # ------------------------------------------------------------------ run
    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "server.properties"

    def extra_logs(self) -> list[Path]:
        return [self.log_dir / "server.log"]

    def write_config(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port()}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port()},CONTROLLER://{HOST}:{self.controller_port()}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port()}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        text = "# written by infra/local/memgrid_infra.py at every start; edits are lost\n"
        text += "".join(f"{k}={v}\n" for k, v in props.items())
        self.config_file.write_text(text)
        log_cfg = self.config_file.parent / "log4j2.xml"
        shutil.copy(HERE / "kafka" / "log4j2.xml", log_cfg)

    def java_opts(self) -> list[str]:
        heap = env("MGINFRA_KAFKA_HEAP", "512m")
        return [
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.config_file.parent / 'log4j2.xml'}",
            # C1 only: about half the CPU to start on a busy 2-core box, and no C2
            # compiler threads competing with tests; *_JAVA_OPTS=-XX:TieredStopAtLevel=4
            # restores the full JIT (the last occurrence of a flag wins).
            "-XX:TieredStopAtLevel=1",
            *shlex.split(env("MGINFRA_KAFKA_JAVA_OPTS", "")),
            self.marker,
        ]

    def classpath(self) -> str:
        return str(self.install_dir / "libs" / "*")

    def prepare(self) -> None:
        self.write_config()
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self._new_cluster_id()
        say(f"kafka: formatting storage in {self.data_dir} (cluster id {cluster_id})")
        run_with_progress(
            [
                java_bin(),
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.config_file.parent / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={self.log_dir}",
                "-cp",
                self.classpath(),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_file),
            ],
            self.log_dir / "format.log",
            "kafka: format storage",
        )
        (self.home / "cluster-id").write_text(cluster_id + "\n")

    @staticmethod
    def _new_cluster_id() -> str:
        # Kafka's Uuid.toString(): URL-safe base64 of 16 bytes without padding (22 chars)
        while True:
            cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            if not cid.startswith("-"):
                return cid

    def command(self) -> list[str]:
        return [
            java_bin(),
            *self.java_opts(),
            "-cp",
            self.classpath(),
            "kafka.Kafka",
            str(self.config_file),
        ]

    def stop_timeout(self) -> float:
        return 40.0

    # ------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str]:
        try:
            brokers, controller = metadata_check(HOST, self.port())
        except (OSError, InfraError) as exc:
            return False, f"metadata request to {HOST}:{self.port()} failed: {exc}"
        if brokers < 1:
            return False, "metadata lists no broker yet"
        return True, f"metadata ok ({brokers} broker, controller {controller})"

    def connection(self) -> dict[str, Any]:
        return {
            "url": f"kafka://{HOST}:{self.port()}",
            "bootstrap_servers": f"{HOST}:{self.port()}",
            "env": {"MEMGRID_BUS__URL": f"kafka://{HOST}:{self.port()}"},
        }


# ---------------------------------------------------------------------- tiny Kafka client
# Just enough of the wire protocol (non-flexible versions) to ask a broker for ApiVersions
# and Metadata, so the health check needs no third-party package.


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client_id = b"memgrid-infra"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    data = _recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise InfraError("correlation id mismatch")
    return data[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise InfraError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def metadata_check(host: str, port: int, timeout: float = 3.0) -> tuple[int, int]:
    """(number of brokers, controller id) from ApiVersions v0 + Metadata v4..v7."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = _request(sock, 18, 0, 1, b"")  # ApiVersions v0
        error, count = struct.unpack(">hi", data[:6])
        if error != 0:
            raise InfraError(f"ApiVersions error code {error}")
        ranges = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", data[6 + 6 * i : 12 + 6 * i])
            ranges[key] = (lo, hi)
        lo, hi = ranges.get(3, (0, -1))
        version = min(hi, 7)
        if version < max(lo, 4):
            raise InfraError(f"broker supports Metadata v{lo}..v{hi}, need one of v4..v7")
        # topics = null (all), allow_auto_topic_creation = false
        data = _request(sock, 3, version, 2, struct.pack(">ib", -1, 0))
        off = 4  # throttle_time_ms
        (n_brokers,) = struct.unpack_from(">i", data, off)
        off += 4
        for _ in range(n_brokers):
            off += 4  # node_id
            (hlen,) = struct.unpack_from(">h", data, off)
            off += 2 + hlen + 4  # host, port
            (rlen,) = struct.unpack_from(">h", data, off)
            off += 2 + max(rlen, 0)  # rack (nullable)
        (clen,) = struct.unpack_from(">h", data, off)
        off += 2 + max(clen, 0)  # cluster_id (nullable)
        (controller,) = struct.unpack_from(">i", data, off)
        return n_brokers, controller
