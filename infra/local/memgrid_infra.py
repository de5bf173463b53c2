#!/usr/bin/env python3
"""memgrid local infrastructure: Kafka (KRaft), Neo4j 5.26 Community and MinIO on 127.0.0.1.

    python3 infra/local/memgrid_infra.py install [SERVER...]   # fetch + cache, start nothing
    python3 infra/local/memgrid_infra.py up      [SERVER...]   # install if needed, start, wait
    python3 infra/local/memgrid_infra.py down    [SERVER...]   # SIGTERM, wait, SIGKILL
    python3 infra/local/memgrid_infra.py status  [SERVER...]   # state, pid, RSS, URL
    python3 infra/local/memgrid_infra.py env     [SERVER...]   # MEMGRID_* exports for the app
    python3 infra/local/memgrid_infra.py logs    [SERVER...]   # tail of each server's logs
    python3 infra/local/memgrid_infra.py wipe    [SERVER...]   # delete data (server must be down)

SERVER is kafka, neo4j or minio (default: all). Standard library only; configuration is
MGINFRA_* environment variables, documented in infra/local/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mginfra.common import InfraError, Server, cache_root, data_root, rss_mib, say
from mginfra.kafka import Kafka
from mginfra.minio import MinIO
from mginfra.neo4j import Neo4j

SERVERS: dict[str, type[Server]] = {"kafka": Kafka, "neo4j": Neo4j, "minio": MinIO}


def pick(names: list[str]) -> list[Server]:
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise InfraError(
            f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}"
        )
    return [SERVERS[n]() for n in (names or list(SERVERS))]


def cmd_install(servers: list[Server]) -> None:
    for s in servers:
        if s.installed():
            say(f"{s.name} {s.version()}: already installed in {cache_root()}")
        else:
            s.ensure_installed()


def cmd_up(servers: list[Server]) -> None:
    started = time.monotonic()
    for s in servers:
        s.up()
    say(
        f"up: {', '.join(s.name for s in servers)} healthy in "
        f"{time.monotonic() - started:.1f} s (data and logs in {data_root()})"
    )


def cmd_down(servers: list[Server]) -> None:
    for s in reversed(servers):
        s.down()


def cmd_status(servers: list[Server]) -> int:
    worst = 0
    print(f"data: {data_root()}   cache: {cache_root()}")
    for s in servers:
        state, detail = s.state()
        pid = s.pid()
        rss = rss_mib(pid) if pid else None
        installed = "installed" if s.installed() else "not installed"
        line = f"{s.name:6} {state:8} {s.version()} ({installed})"
        if rss is not None:
            line += f"  RSS {rss:.0f} MiB"
        line += f"  {s.connection()['url']}"
        print(line)
        if detail:
            print(f"       {detail}")
        if state != "running":
            worst = 1
    return worst


def cmd_env(servers: list[Server]) -> None:
    for s in servers:
        for key, value in s.connection().get("env", {}).items():
            print(f"export {key}={shlex.quote(str(value))}")


def cmd_logs(servers: list[Server]) -> None:
    for s in servers:
        print(s.log_report(30))


def cmd_wipe(servers: list[Server]) -> None:
    for s in servers:
        if s.pid() is not None:
            raise InfraError(f"{s.name} is running; run `down` first")
        if s.home.exists():
            shutil.rmtree(s.home)
            say(f"{s.name}: deleted {s.home}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="memgrid_infra.py",
        description="Install and run memgrid's Kafka, Neo4j and MinIO on 127.0.0.1 (no Docker).",
    )
    parser.add_argument(
        "command", choices=["install", "up", "down", "status", "env", "logs", "wipe"]
    )
    parser.add_argument("servers", nargs="*", help=f"any of {', '.join(SERVERS)} (default all)")
    args = parser.parse_args(argv)
    try:
        servers = pick(args.servers)
        if args.command == "install":
            cmd_install(servers)
        elif args.command == "up":
            cmd_up(servers)
        elif args.command == "down":
            cmd_down(servers)
        elif args.command == "status":
            return cmd_status(servers)
        elif args.command == "env":
            cmd_env(servers)
        elif args.command == "logs":
            cmd_logs(servers)
        elif args.command == "wipe":
            cmd_wipe(servers)
    except InfraError as exc:
        print(f"[mginfra] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:  # e.g. `env | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("[mginfra] interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
