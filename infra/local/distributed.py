#!/usr/bin/env python3
"""Run memgrid distributed on this machine: infra servers plus one process per service.

    python3 infra/local/distributed.py up        # infra up, then every service
    python3 infra/local/distributed.py status
    python3 infra/local/distributed.py down      # services, then infra
    python3 infra/local/distributed.py stop vault --kill    # one service (SIGKILL)
    python3 infra/local/distributed.py start vault          # again, with the same settings

``make run-distributed`` / ``make down`` call ``up`` / ``down``. Standard library
only. The servers come from memgrid_infra.py (its MGINFRA_* knobs apply, e.g. other
ports for a second set); the services get their MEMGRID_* settings from it.

Everything lives under the run directory (``--run-dir``, default ``.memgrid/run``):
``config.json`` (ports, settings, command: what ``start`` reuses), ``secrets.json``
(mode 0600: the admin key clients use to create tenants, and the token the vault's
internal API requires), and per service ``<name>.pid``, ``<name>.log`` and its data
directory ``<name>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "local" / "memgrid_infra.py"
# Start order: the vault before the interface that calls it; stop in reverse.
SERVICES = ("vault", "scheduler", "governance", "trainer", "interface")
DEFAULT_PORTS = {
    "interface": 8080,
    "vault": 8091,
    "scheduler": 6066,
    "governance": 6067,
    "trainer": 6068,
}
# Which URL says a service is ready. The scheduler's /readyz waits for its table.
HEALTH = {
    "vault": "/healthz",
    "interface": "/healthz",
    "scheduler": "/readyz",
    "governance": "/readyz",  # its partitions assigned, its log writable
    "trainer": "/readyz",  # the vault answers it
}
MARKER = "--service"  # part of every service's command line (pid ownership check)


class LaunchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[memgrid] {msg}", flush=True)


# --- configuration -----------------------------------------------------------------


@dataclass
class Config:
    run_dir: Path
    python: str
    host: str
    ports: dict[str, int]
    infra_env: dict[str, str]  # MEMGRID_* settings of the servers
    extra_env: dict[str, str]  # user's MEMGRID_* overrides (embedder, log level, ...)
    start_timeout_s: float

    def save(self) -> None:
        data = {
            "python": self.python,
            "host": self.host,
            "ports": self.ports,
            "infra_env": self.infra_env,
            "extra_env": self.extra_env,
            "start_timeout_s": self.start_timeout_s,
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> Config:
        path = run_dir / "config.json"
        if not path.exists():
            raise LaunchError(f"{path} missing: run `up` first")
        data = json.loads(path.read_text())
        return cls(run_dir=run_dir, **data)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"


def infra_env(environ: dict[str, str]) -> dict[str, str]:
    """The MEMGRID_* settings of the infra servers, as memgrid_infra.py prints them."""
    out = subprocess.run(
        [sys.executable, str(INFRA), "env"],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
    ).stdout
    env = {}
    for line in out.splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, _, value = parts[1].partition("=")
            env[key] = value
    if "MEMGRID_BUS__URL" not in env:
        raise LaunchError(f"unexpected output of {INFRA.name} env:\n{out}")
    return env


def load_secrets(run_dir: Path) -> dict[str, str]:
    """Admin key and internal service token, made once and kept (0600)."""
    path = run_dir / "secrets.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {
        "admin_key": os.environ.get("MEMGRID_ADMIN_KEY") or "mgadmin_" + secrets.token_urlsafe(24),
        "service_token": secrets.token_urlsafe(32),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    return data


def service_env(cfg: Config, service: str) -> dict[str, str]:
    """The environment of one service process: nothing but its own MEMGRID_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")}
    env.update(cfg.infra_env)
    env.update(cfg.extra_env)
    sec = load_secrets(cfg.run_dir)
    env.update(
        {
            "MEMGRID_MODE": "distributed",
            "MEMGRID_HOST": cfg.host,
            "MEMGRID_DATA_DIR": str(cfg.run_dir / service),
            "MEMGRID_VAULT__SERVICE_TOKEN": sec["service_token"],
            "MEMGRID_TELEMETRY__SERVICE_NAME": f"memgrid-{service}",
        }
    )
    if service in ("vault", "interface"):
        env["MEMGRID_PORT"] = str(cfg.ports[service])
    if service == "interface":
        env["MEMGRID_VAULT__URL"] = cfg.url("vault")
        env["MEMGRID_SCHEDULER__URL"] = cfg.url("scheduler")  # GET /v1/memories/{id}/usage
        env["MEMGRID_ADMIN_KEY"] = sec["admin_key"]
    if service == "scheduler":
        env["MEMGRID_SCHEDULER__WEB_PORT"] = str(cfg.ports["scheduler"])
        env["MEMGRID_VAULT__URL"] = cfg.url("vault")  # expiry, transitions, merges
    if service == "governance":
        env["MEMGRID_GOVERNANCE__WEB_PORT"] = str(cfg.ports["governance"])
    if service == "trainer":
        env["MEMGRID_TRAINER__WEB_PORT"] = str(cfg.ports["trainer"])
        env["MEMGRID_VAULT__URL"] = cfg.url("vault")  # reads cubes, records adapters
        env.setdefault("MEMGRID_BUS__MAX_POLL_INTERVAL_S", "7200")  # a training per handler call
    return env


# --- processes -----------------------------------------------------------------------


def _pid_file(cfg: Config, service: str) -> Path:
    return cfg.run_dir / f"{service}.pid"


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def running_pid(cfg: Config, service: str) -> int | None:
    """The pid in the service's pid file if that process is alive and is ours."""
    path = _pid_file(cfg, service)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if MARKER.encode() in cmdline and service.encode() in cmdline and _alive(pid):
        return pid
    return None


def port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def healthy(cfg: Config, service: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(cfg.url(service) + HEALTH[service], timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_service(cfg: Config, service: str, *, wait: bool = True) -> int:
    """Starts one service (or finds it running); returns its pid."""
    pid = running_pid(cfg, service)
    if pid is not None:
        log(f"{service}: already running (pid {pid})")
        return pid
    port = cfg.ports[service]
    if port_busy(cfg.host, port):
        raise LaunchError(f"{service}: port {port} on {cfg.host} is in use by another process")
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = cfg.run_dir / f"{service}.log"
    cmd = [cfg.python, "-m", "services.cli", "serve", MARKER, service]
    with open(log_path, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {service}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=service_env(cfg, service),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop signals all of it
        )
    _pid_file(cfg, service).write_text(f"{proc.pid}\n")
    log(f"{service}: started pid {proc.pid}, log {log_path}")
    if wait:
        wait_healthy(cfg, service, proc)
    return proc.pid


def wait_healthy(cfg: Config, service: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    t0 = time.monotonic()
    deadline = t0 + cfg.start_timeout_s
    while time.monotonic() < deadline:
        if healthy(cfg, service):
            log(f"{service}: healthy after {time.monotonic() - t0:.1f} s -> {cfg.url(service)}")
            return
        if proc is not None and proc.poll() is not None:
            raise LaunchError(
                f"{service} exited with {proc.returncode}; last log lines:\n"
                + tail(cfg.run_dir / f"{service}.log")
            )
        time.sleep(0.3)
    raise LaunchError(
        f"{service} not healthy after {cfg.start_timeout_s:.0f} s; last log lines:\n"
        + tail(cfg.run_dir / f"{service}.log")
    )


def stop_service(cfg: Config, service: str, *, kill: bool = False, timeout_s: float = 30.0) -> bool:
    """SIGTERM (or SIGKILL with ``kill``) to the service's process group; waits, then
    SIGKILL. Returns False if it was not running."""
    pid = running_pid(cfg, service)
    pid_file = _pid_file(cfg, service)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
    # Wait on the pid itself: a dying process's command line reads empty before
    # its sockets are closed, so the marker check would end the wait too early.
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        log(f"{service}: still running after {timeout_s:.0f} s, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    port = cfg.ports[service]
    deadline = time.monotonic() + 10
    while port_busy(cfg.host, port) and time.monotonic() < deadline:
        time.sleep(0.1)  # a child of the group may still hold it for a moment
    pid_file.unlink(missing_ok=True)
    log(f"{service}: stopped (pid {pid}{', SIGKILL' if kill else ''})")
    return True


# --- commands ------------------------------------------------------------------------


def infra(command: str, *servers: str) -> None:
    subprocess.run([sys.executable, str(INFRA), command, *servers], check=True)


def cmd_up(args: argparse.Namespace) -> int:
    if not args.no_infra:
        infra("up")
    ports = dict(DEFAULT_PORTS)
    for name in DEFAULT_PORTS:
        value = getattr(args, f"{name}_port")
        if value is not None:
            ports[name] = value
    extra = {k: v for k, v in os.environ.items() if k.startswith("MEMGRID_")}
    if args.embedder:
        extra["MEMGRID_EMBEDDER__BACKEND"] = args.embedder
    cfg = Config(
        run_dir=args.run_dir,
        python=args.python,
        host="127.0.0.1",
        ports=ports,
        infra_env=infra_env(dict(os.environ)),
        extra_env=extra,
        start_timeout_s=args.timeout,
    )
    cfg.save()
    started: list[str] = []
    try:
        for service in args.services:
            if running_pid(cfg, service) is None:
                started.append(service)
            start_service(cfg, service)
    except LaunchError as exc:
        print(f"[memgrid] error: {exc}", file=sys.stderr)
        for service in reversed(started):
            stop_service(cfg, service)
        return 1
    sec = load_secrets(cfg.run_dir)
    print()
    print(f"memgrid API:        {cfg.url('interface')}   (OpenAPI: {cfg.url('interface')}/docs)")
    print(f"admin key:          {sec['admin_key']}   (also in {cfg.run_dir / 'secrets.json'})")
    print(f"vault (internal):   {cfg.url('vault')}")
    print(f"scheduler usage:    {cfg.url('scheduler')}/usage/CUBE_ID")
    print(f"governance audit:   {cfg.run_dir / 'governance' / 'governance' / 'audit.jsonl'}")
    print(f"trainer:            {cfg.url('trainer')}/readyz   (adapters: GET /v1/adapters)")
    print(f"logs and pids:      {cfg.run_dir}/")
    print("stop everything:    make down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        cfg = Config.load(args.run_dir)
    except LaunchError:
        cfg = None
    if cfg is not None:
        for service in reversed(SERVICES):
            stop_service(cfg, service)
    if not args.keep_infra:
        infra("down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = Config.load(args.run_dir)
    ok = True
    for service in SERVICES:
        pid = running_pid(cfg, service)
        state = "stopped" if pid is None else ("healthy" if healthy(cfg, service) else "starting")
        ok &= state == "healthy"
        print(f"{service:11} {state:8} pid {pid or '-':<8} {cfg.url(service)}")
    return 0 if ok else 1


def cmd_start(args: argparse.Namespace) -> int:
    cfg = Config.load(args.run_dir)
    for service in args.names:
        start_service(cfg, service)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    cfg = Config.load(args.run_dir)
    for service in args.names:
        if not stop_service(cfg, service, kill=args.kill):
            log(f"{service}: not running")
    return 0


def main(argv: list[str] | None = None) -> int:
    default_run_dir = REPO / ".memgrid" / "run"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=default_run_dir)
    # Also accepted after the command (make passes options there).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", parents=[common], help="start infra and the services; print the API URL"
    )
    up.add_argument("--no-infra", action="store_true", help="servers are already running")
    up.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    up.add_argument("--embedder", help="MEMGRID_EMBEDDER__BACKEND for the vault (e.g. hashing)")
    up.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per service to be healthy"
    )
    venv_python = REPO / ".venv" / "bin" / "python"
    up.add_argument(
        "--python", default=str(venv_python) if venv_python.exists() else sys.executable
    )
    for name, port in DEFAULT_PORTS.items():
        up.add_argument(f"--{name}-port", type=int, default=None, help=f"default {port}")
    up.set_defaults(fn=cmd_up)
    down = sub.add_parser("down", parents=[common], help="stop the services, then infra")
    down.add_argument("--keep-infra", action="store_true")
    down.set_defaults(fn=cmd_down)
    sub.add_parser("status", parents=[common], help="state of each service").set_defaults(
        fn=cmd_status
    )
    start = sub.add_parser(
        "start", parents=[common], help="start services again with the saved settings"
    )
    start.add_argument("names", nargs="+", choices=SERVICES)
    start.set_defaults(fn=cmd_start)
    stop = sub.add_parser("stop", parents=[common], help="stop services (--kill: SIGKILL at once)")
    stop.add_argument("names", nargs="+", choices=SERVICES)
    stop.add_argument("--kill", action="store_true")
    stop.set_defaults(fn=cmd_stop)
    args = parser.parse_args(argv)
    if args.command == "up":
        args.services = [s for s in SERVICES if s in args.services]  # dependency order
    args.run_dir = args.run_dir.resolve()
    try:
        code: int = args.fn(args)
        return code
    except (LaunchError, subprocess.CalledProcessError) as exc:
        print(f"[memgrid] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
