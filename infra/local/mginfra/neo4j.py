"""Neo4j 5.26 Community, embedded, with the Bolt connector, jars from Maven Central.

No Neo4j server tarball is published on Maven Central, so the launcher is a small Java
program (infra/local/neo4j/MemgridNeo4j.java) that builds a DatabaseManagementService from
org.neo4j:neo4j (kernel, Cypher, Lucene full-text and vector indexes, Bolt, security) with a
neo4j.conf written here. It is compiled once with javac into the install cache.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import socket
import struct
import zipfile
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
    env_bool,
    env_int,
    fresh_dir,
    java_bin,
    javac_bin,
    maven_copy_dependencies,
    run_with_progress,
    say,
)

DEFAULT_VERSION = "5.26.30"
LAUNCHER = HERE / "neo4j" / "MemgridNeo4j.java"


class Neo4j(Server):
    name = "neo4j"
    marker = "-Dmemgrid.infra=neo4j"

    def version(self) -> str:
        return env("MGINFRA_NEO4J_VERSION", DEFAULT_VERSION)

    def port(self) -> int:
        return env_int("MGINFRA_NEO4J_BOLT_PORT", 7687)

    def ports(self) -> list[Port]:
        return [Port("neo4j bolt", self.port())]

    def auth(self) -> bool:
        return env_bool("MGINFRA_NEO4J_AUTH", True)

    def user(self) -> str:
        return "neo4j"

    def password(self) -> str:
        pw = env("MGINFRA_NEO4J_PASSWORD", "memgrid-dev-password")
        if len(pw) < 8:
            raise InfraError(
                "MGINFRA_NEO4J_PASSWORD must be at least 8 characters (Neo4j's minimum)"
            )
        return pw

    # ------------------------------------------------------------------ install
    @property
    def install_dir(self) -> Path:
        return cache_root() / "neo4j" / self.version()

    def installed(self) -> bool:
        return (self.install_dir / "INSTALLED").exists() and self._classes_current()

    def _launcher_hash(self) -> str:
        return hashlib.sha256(LAUNCHER.read_bytes()).hexdigest()[:16]

    def _classes_current(self) -> bool:
        stamp = self.install_dir / "classes" / "SOURCE-HASH"
        return (
            self.launcher_jar.exists()
            and stamp.exists()
            and stamp.read_text().strip() == self._launcher_hash()
        )

    def install(self) -> None:
        if not (self.install_dir / "INSTALLED").exists():
            work = fresh_dir(self.install_dir.with_name(self.install_dir.name + ".partial"))
            maven_copy_dependencies(
                HERE / "neo4j" / "pom.xml",
                work,
                {"neo4j.version": self.version()},
                "lib",
                f"neo4j {self.version()}: resolving jars with Maven",
            )
            jars = list((work / "lib").glob("*.jar"))
            if not any(j.name == f"neo4j-{self.version()}.jar" for j in jars):
                raise InfraError(f"neo4j install: no neo4j-{self.version()}.jar in {work / 'lib'}")
            (work / "INSTALLED").write_text(f"org.neo4j:neo4j {self.version()}, {len(jars)} jars\n")
            if self.install_dir.exists():
                shutil.rmtree(self.install_dir)
            work.rename(self.install_dir)
            say(f"neo4j {self.version()}: {len(jars)} jars in {self.install_dir / 'lib'}")
        self._compile()

    def _compile(self) -> None:
        classes = fresh_dir(self.install_dir / "classes")
        run_with_progress(
            [
                javac_bin(),
                "-nowarn",
                "-cp",
                str(self.install_dir / "lib" / "*"),
                "-d",
                str(classes),
                str(LAUNCHER),
            ],
            self.install_dir / "compile.log",
            "neo4j: compiling MemgridNeo4j.java",
        )
        # a jar, not a class folder, so the classpath qualifies for class-data sharing (CDS)
        with zipfile.ZipFile(self.launcher_jar, "w") as jar:
            for cls in sorted(classes.glob("*.class")):
                jar.write(cls, cls.name)
        shutil.rmtree(self.install_dir / "cds", ignore_errors=True)  # archives name the old jar
        (classes / "SOURCE-HASH").write_text(self._launcher_hash() + "\n")

    @property
    def launcher_jar(self) -> Path:
        return self.install_dir / "memgrid-neo4j-launcher.jar"

    # ------------------------------------------------------------------ class-data sharing
    # Neo4j loads ~15k classes at start. The first run with CDS on dumps them into an archive
    # when it stops cleanly (-XX:ArchiveClassesAtExit); later starts map it
    # (-XX:SharedArchiveFile), which cuts start-up time. -Xshare:auto (the default) silently
    # ignores an archive that does not match, so the worst case is an ordinary start.
    def _cds_archive(self) -> Path:
        java = Path(java_bin()).resolve()
        key = hashlib.sha256(f"{java}:{java.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        return self.install_dir / "cds" / f"neo4j-{key}.jsa"

    def _cds_flags(self) -> list[str]:
        if not env_bool("MGINFRA_NEO4J_CDS", True):
            return []
        quiet = "-Xlog:cds=off,cds+dynamic=off"
        archive = self._cds_archive()
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}", quiet]
        archive.parent.mkdir(parents=True, exist_ok=True)
        marker = self.home / "cds-dump"
        if marker.exists():  # left by a run that crashed: its dump may be partial
            Path(marker.read_text().split()[0]).unlink(missing_ok=True)
        dump = archive.with_name(f"dump-{secrets.token_hex(6)}.jsa")
        marker.write_text(f"{dump}\n{archive}\n")
        return [f"-XX:ArchiveClassesAtExit={dump}", quiet]

    def after_stop(self, graceful: bool) -> None:
        marker = self.home / "cds-dump"
        if not marker.exists():
            return
        dump, archive = (Path(x) for x in marker.read_text().split())
        marker.unlink()
        if graceful and dump.exists() and not archive.exists():
            os.replace(dump, archive)
            say(f"neo4j: saved a class-data archive for faster starts ({archive.name})")
        else:
            dump.unlink(missing_ok=True)

    # ------------------------------------------------------------------ run
    @property
    def conf_file(self) -> Path:
        return self.home / "conf" / "neo4j.conf"

    def extra_logs(self) -> list[Path]:
        return [self.home / "logs" / "debug.log"]

    def write_config(self) -> None:
        self.conf_file.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": f"{HOST}:{self.port()}",
            "server.bolt.advertised_address": f"{HOST}:{self.port()}",
            "server.bolt.tls_level": "DISABLED",
            "server.http.enabled": "false",
            "server.https.enabled": "false",
            "dbms.security.auth_enabled": "true" if self.auth() else "false",
            "server.memory.pagecache.size": env("MGINFRA_NEO4J_PAGECACHE", "128m"),
            "dbms.memory.transaction.total.max": env("MGINFRA_NEO4J_TX_MEMORY", "256m"),
            "db.tx_log.rotation.retention_policy": "2 files",
            "db.tx_log.rotation.size": "16m",
            "dbms.usage_report.enabled": "false",
            "server.logs.debug.enabled": "true",
            # Bolt waits 5 s twice (netty quiet period) on shutdown by default
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "1",
        }
        text = "# written by infra/local/memgrid_infra.py at every start; edits are lost\n"
        text += "".join(f"{k}={v}\n" for k, v in settings.items())
        self.conf_file.write_text(text)

    def prepare(self) -> None:
        self.write_config()

    def command(self) -> list[str]:
        heap = env("MGINFRA_NEO4J_HEAP", "512m")
        classpath = f"{self.launcher_jar}:{self.install_dir / 'lib' / '*'}"
        return [
            java_bin(),
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:-OmitStackTraceInFastThrow",
            "-XX:+DisableExplicitGC",
            "-Djdk.nio.maxCachedBufferSize=1024",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dlog4j2.disable.jmx=true",
            "-Djava.awt.headless=true",
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            # C1 only: about half the CPU to start on a busy 2-core box, and no C2
            # compiler threads competing with tests; *_JAVA_OPTS=-XX:TieredStopAtLevel=4
            # restores the full JIT (the last occurrence of a flag wins).
            "-XX:TieredStopAtLevel=1",
            *self._cds_flags(),
            *shlex.split(env("MGINFRA_NEO4J_JAVA_OPTS", "")),
            self.marker,
            "-cp",
            classpath,
            "MemgridNeo4j",
            str(self.home),
            str(self.conf_file),
        ]

    def environment(self) -> dict[str, str]:
        return {"MGINFRA_NEO4J_PASSWORD": self.password() if self.auth() else ""}

    def stop_timeout(self) -> float:
        return 60.0

    # ------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str]:
        try:
            ready_pid = int((self.home / "ready.pid").read_text().strip())
        except (OSError, ValueError):
            ready_pid = None
        if ready_pid is None or ready_pid != self.pid():
            return False, "launcher has not reported ready yet (ready.pid)"
        try:
            bolt_return_1(
                HOST,
                self.port(),
                self.user() if self.auth() else None,
                self.password() if self.auth() else None,
            )
        except (OSError, InfraError) as exc:
            return False, f"Bolt RETURN 1 on {HOST}:{self.port()} failed: {exc}"
        return True, "Bolt RETURN 1 ok"

    def connection(self) -> dict[str, Any]:
        url = f"bolt://{HOST}:{self.port()}"
        env_vars = {
            "MEMGRID_GRAPH__URL": url,
            "MEMGRID_GRAPH__USER": self.user(),
            "MEMGRID_GRAPH__DATABASE": "neo4j",
        }
        if self.auth():
            env_vars["MEMGRID_GRAPH__PASSWORD"] = self.password()
        return {
            "url": url,
            "user": self.user(),
            "password": self.password() if self.auth() else None,
            "auth": self.auth(),
            "env": env_vars,
        }


# ---------------------------------------------------------------------- tiny Bolt client
# Bolt 4.4 (which Neo4j 5.x still speaks): handshake, HELLO with credentials, RUN, PULL.


def _pack_str(s: str) -> bytes:
    b = s.encode()
    if len(b) < 16:
        return bytes([0x80 + len(b)]) + b
    if len(b) < 256:
        return bytes([0xD0, len(b)]) + b
    return struct.pack(">BH", 0xD1, len(b)) + b


def _pack_map(d: dict[str, Any]) -> bytes:
    out = bytes([0xA0 + len(d)])
    for k, v in d.items():
        out += _pack_str(k)
        out += _pack_str(v) if isinstance(v, str) else bytes([v & 0xFF])  # tiny ints only
    return out


def _send(sock: socket.socket, signature: int, *fields: bytes) -> None:
    msg = bytes([0xB0 + len(fields), signature]) + b"".join(fields)
    sock.sendall(struct.pack(">H", len(msg)) + msg + b"\x00\x00")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise InfraError("connection closed by server")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> bytes:
    msg = bytearray()
    while True:
        (size,) = struct.unpack(">H", _recv_exact(sock, 2))
        if size == 0:
            if msg:
                return bytes(msg)
            continue  # NOOP keep-alive chunk
        msg += _recv_exact(sock, size)


def _expect_success(sock: socket.socket, what: str) -> None:
    msg = _recv(sock)
    if msg[1] == 0x70:
        return
    text = msg[2:].decode("utf-8", errors="replace")
    kind = {0x7F: "FAILURE", 0x7E: "IGNORED"}.get(msg[1], hex(msg[1]))
    raise InfraError(f"{what}: {kind} {''.join(c for c in text if c.isprintable())[:200]}")


def bolt_return_1(
    host: str, port: int, user: str | None, password: str | None, timeout: float = 5.0
) -> None:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"\x60\x60\xb0\x17" + b"\x00\x00\x04\x04" + b"\x00" * 12)
        agreed = _recv_exact(sock, 4)
        if agreed != b"\x00\x00\x04\x04":
            raise InfraError(f"server did not agree to Bolt 4.4 (answered {agreed.hex()})")
        hello = {"user_agent": "memgrid-infra/1"}
        if user is None:
            hello["scheme"] = "none"
        else:
            hello.update({"scheme": "basic", "principal": user, "credentials": password or ""})
        _send(sock, 0x01, _pack_map(hello))
        _expect_success(sock, "HELLO")
        _send(sock, 0x10, _pack_str("RETURN 1 AS one"), _pack_map({}), _pack_map({}))
        _expect_success(sock, "RUN")
        _send(sock, 0x3F, _pack_map({"n": -1}))
        record = _recv(sock)
        if record[:4] != b"\xb1\x71\x91\x01":
            raise InfraError(f"unexpected reply to RETURN 1: {record[:16].hex()}")
        _expect_success(sock, "PULL")
        _send(sock, 0x02)  # GOODBYE
