"""Shared machinery: configuration, paths, installs with progress, processes and pid files.

Standard library only. Every knob is an ``MGINFRA_*`` environment variable, read only by
this launcher (the memgrid app itself rejects unknown ``MEMGRID_*`` variables, so the
launcher deliberately uses another prefix).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent.parent  # infra/local


class InfraError(Exception):
    """A failure we can explain in one message (no traceback is printed for it)."""


# ----------------------------------------------------------------------------- config


def env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value if value else default


def env_int(name: str, default: int) -> int:
    raw = env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise InfraError(f"{name}={raw!r} is not an integer") from None


def env_bool(name: str, default: bool) -> bool:
    raw = env(name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InfraError(f"{name}={raw!r} is not a boolean (true/false)")


def cache_root() -> Path:
    """Installed artifacts (jars, binaries): survive `down` and data wipes."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memgrid"
    return Path(env("MGINFRA_CACHE_DIR", str(default))).expanduser().resolve()


def data_root() -> Path:
    """Data, logs and pid files of the running servers."""
    raw = env("MGINFRA_DATA_DIR", str(REPO_ROOT / ".memgrid" / "infra"))
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path.resolve()


def start_timeout() -> int:
    return env_int("MGINFRA_START_TIMEOUT", 180)


HOST = "127.0.0.1"  # every server binds to loopback only


# ----------------------------------------------------------------------------- output


def say(msg: str) -> None:
    print(f"[mginfra] {msg}", flush=True)


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- tools


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise InfraError(f"`{name}` is not on PATH: {hint}")
    return path


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return require_tool("java", "install a JDK 17 (apt-get install openjdk-17-jdk-headless)")


def javac_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "javac").exists():
        return str(Path(home) / "bin" / "javac")
    return require_tool("javac", "install a JDK 17 (apt-get install openjdk-17-jdk-headless)")


def run_with_progress(
    cmd: list[str],
    log: Path,
    label: str,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
    every: float = 15.0,
) -> float:
    """Run a long install command, output to ``log``, printing a heartbeat. Returns seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"{label}: running {' '.join(cmd)}")
    say(f"{label}: output goes to {log}")
    started = time.monotonic()
    environ = dict(os.environ)
    if extra_env:
        environ.update(extra_env)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        next_beat = started + every
        seen = ""
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() >= next_beat:
                last = tail(log, 1).strip()[:110]
                news = f": {last}" if last and last != seen else ""
                seen = last
                say(f"{label}: still working ({time.monotonic() - started:.0f} s){news}")
                next_beat += every
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise InfraError(
            f"{label} failed (exit {proc.returncode}) after {took:.0f} s; "
            f"last lines of {log}:\n{tail(log, 30)}"
        )
    say(f"{label}: done in {took:.1f} s")
    return took


def maven_copy_dependencies(
    pom: Path, work: Path, properties: dict[str, str], output: str, label: str
) -> float:
    """Resolve a pom-packaging project's runtime dependencies into work/output (Maven Central).

    MGINFRA_MAVEN_REPO points Maven at another local repository (default ~/.m2/repository).
    """
    mvn = require_tool("mvn", "install Maven 3 (apt-get install maven)")
    shutil.copy(pom, work / "pom.xml")
    cmd = [mvn, "-B", "-ntp"]
    repo = env("MGINFRA_MAVEN_REPO", "")
    if repo:
        cmd.append(f"-Dmaven.repo.local={Path(repo).expanduser().resolve()}")
    cmd += [f"-D{k}={v}" for k, v in properties.items()]
    cmd += ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={output}"]
    return run_with_progress(cmd, work / "install.log", label, cwd=work)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# ----------------------------------------------------------------------------- ports


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if something listens on host:port (a bind attempt fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def listener_inodes(port: int) -> set[str]:
    """Socket inodes of the TCP listeners on a port (from /proc/net, no extra tools)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(target[8:-1])
    return found


def pid_listens_on(pid: int, port: int) -> bool:
    """True if the process itself holds the listening socket of the port."""
    return bool(listener_inodes(port) & socket_inodes(pid))


def port_owner(port: int) -> str:
    """Best-effort description of who listens on a port."""
    inodes = listener_inodes(port)
    if inodes:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if socket_inodes(int(pid)) & inodes:
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    cmd_s = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid}: {cmd_s[:160]}"
    return "another process (not visible to this user)"


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_in_use(port):
            return True
        time.sleep(0.2)
    return False


# ----------------------------------------------------------------------------- processes


@contextlib.contextmanager
def flocked(path: Path, what: str) -> Iterator[None]:
    """An exclusive advisory lock on a file, held for the with-block (waits if taken)."""
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{what}: another memgrid_infra.py holds {path}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child not yet reaped) is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process in MiB (VmRSS), None if unknown."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


@dataclass
class Port:
    name: str
    number: int


class Server:
    """One server: subclasses fill in install, command line, ports and the health check."""

    name = "server"
    marker = ""  # a string that must appear in the process command line (pid reuse guard)

    # --- to override
    def ports(self) -> list[Port]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def installed(self) -> bool:
        raise NotImplementedError

    def install(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time data preparation before the first start (e.g. Kafka storage format)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def healthy(self) -> tuple[bool, str]:
        raise NotImplementedError

    def connection(self) -> dict[str, Any]:
        raise NotImplementedError

    def after_healthy(self) -> None:
        """Runs once the server answers its health check after a start (e.g. create a bucket)."""

    def after_stop(self, graceful: bool) -> None:
        """Runs after the process is gone; graceful is False if it had to be SIGKILLed."""

    def stop_timeout(self) -> float:
        return 30.0

    # --- paths
    @property
    def home(self) -> Path:
        return data_root() / self.name

    @property
    def pid_file(self) -> Path:
        return self.home / "server.pid"

    @property
    def log_file(self) -> Path:
        """stdout and stderr of the server process."""
        return self.home / "logs" / "console.log"

    def extra_logs(self) -> list[Path]:
        return []

    # --- state
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if self.marker in cmdline else None

    def state(self) -> tuple[str, str]:
        """('running'|'starting'|'stopped'|'blocked', detail)."""
        pid = self.pid()
        if pid is None:
            busy = [p for p in self.ports() if port_in_use(p.number)]
            if busy:
                p = busy[0]
                return "blocked", (
                    f"not running, but port {p.number} ({p.name}) is used by {port_owner(p.number)}"
                )
            return "stopped", ""
        ok, detail = self.healthy()
        if ok and not self._owns_ports(pid):
            ok, detail = False, "alive, but its ports are served by another process"
        return ("running" if ok else "starting"), f"pid {pid}; {detail}"

    # --- actions
    def ensure_installed(self) -> None:
        if self.installed():
            return
        cache_root().mkdir(parents=True, exist_ok=True)
        with flocked(cache_root() / f".{self.name}-install.lock", f"{self.name} install"):
            if self.installed():  # another process finished it while we waited
                return
            say(
                f"{self.name} {self.version()}: installing into {cache_root()} (once; later "
                "starts reuse it)"
            )
            started = time.monotonic()
            self.install()
            say(f"{self.name} {self.version()}: installed in {time.monotonic() - started:.1f} s")

    def up(self) -> None:
        with self._lock():
            self._up()

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """One `up`/`down` of this server (same data dir) at a time."""
        self.home.mkdir(parents=True, exist_ok=True)
        return flocked(self.home / ".lock", f"{self.name} start/stop")

    def _check_ports(self) -> None:
        for p in self.ports():
            if port_in_use(p.number):
                raise InfraError(
                    f"{self.name}: cannot start, port {HOST}:{p.number} ({p.name}) is already in "
                    f"use by {port_owner(p.number)}. Stop that process or pick another port with "
                    f"the matching MGINFRA_* variable (see infra/local/README.md)."
                )

    def _up(self) -> None:
        pid = self.pid()
        if pid is not None:
            ok, detail = self.healthy()
            if ok and self._owns_ports(pid):
                say(f"{self.name}: already running (pid {pid}); nothing to do")
                return
            say(f"{self.name}: process {pid} exists but is not healthy yet ({detail}); waiting")
            self._wait_healthy(pid, time.monotonic())
            return
        self._check_ports()  # fail fast, before a long install
        self.ensure_installed()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._check_ports()  # again: an install can take minutes
        cmd = self.command()
        environ = dict(os.environ)
        environ.update(self.environment())
        started = time.monotonic()
        with self.log_file.open("ab") as out:
            out.write(
                f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.home,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        say(
            f"{self.name}: started pid {proc.pid}, waiting until healthy "
            f"(timeout {start_timeout()} s)"
        )
        self._wait_healthy(proc.pid, started, proc)

    def _owns_ports(self, pid: int) -> bool:
        return all(pid_listens_on(pid, p.number) for p in self.ports())

    def _wait_healthy(
        self, pid: int, started: float, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = started + start_timeout()
        detail = "no answer yet"
        while time.monotonic() < deadline:
            exited = (proc.poll() is not None) if proc is not None else not pid_alive(pid)
            if exited:
                code = proc.returncode if proc is not None else "?"
                self.pid_file.unlink(missing_ok=True)
                raise InfraError(
                    f"{self.name}: process {pid} exited (code {code}) before it "
                    f"became healthy.\n{self.log_report()}"
                )
            ok, detail = self.healthy()
            if ok and not self._owns_ports(pid):
                # the answer came from someone else on our port (e.g. started meanwhile)
                ok, detail = False, "the health check answered, but not from our process"
            if ok:
                self.after_healthy()
                rss = rss_mib(pid) or 0.0
                say(
                    f"{self.name}: healthy after {time.monotonic() - started:.1f} s "
                    f"(pid {pid}, RSS {rss:.0f} MiB) -> {self.connection()['url']}"
                )
                return
            time.sleep(0.5)
        raise InfraError(
            f"{self.name}: not healthy {start_timeout()} s after start (last check: "
            f"{detail}); the process (pid {pid}) is left running, "
            f"`down` stops it.\n{self.log_report()}"
        )

    def log_report(self, lines: int = 40) -> str:
        parts = []
        for path in [self.log_file, *self.extra_logs()]:
            parts.append(f"----- last {lines} lines of {path}\n{tail(path, lines)}")
        return "\n".join(parts)

    def down(self) -> None:
        if not self.home.exists():
            say(f"{self.name}: not running")
            return
        with self._lock():
            self._down()

    def _down(self) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            say(f"{self.name}: not running")
            return
        say(f"{self.name}: stopping pid {pid} (SIGTERM)")
        started = time.monotonic()
        self._signal(pid, signal.SIGTERM)
        deadline = started + self.stop_timeout()
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        graceful = not pid_alive(pid)
        if not graceful:
            say(f"{self.name}: still running after {self.stop_timeout():.0f} s, sending SIGKILL")
            self._signal(pid, signal.SIGKILL)
            while pid_alive(pid) and time.monotonic() < deadline + 10:
                time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)
        self.after_stop(graceful)
        for p in self.ports():
            wait_port_free(p.number, 5)
        say(f"{self.name}: stopped in {time.monotonic() - started:.1f} s")

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        # the server runs in its own session/process group (start_new_session=True)
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
