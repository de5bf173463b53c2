"""One local Ray for the whole test session (INFRA-NOTES: starting Ray costs ~4 s
and ~0.85 GB; a full serve.run ~8 s), and a helper that serves an ASGI app on a
free port in a thread (the vault, for Serve replicas in other processes)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # Ray 2.60 turns token auth on; a private local test cluster opts out. Ray reads
    # this itself in the processes it spawns, so it goes in their environment.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024)
    try:
        yield
    finally:
        from ray import serve

        bounded(serve.shutdown, "serve.shutdown")
        bounded(ray.shutdown, "ray.shutdown")


def bounded(step: Any, name: str, timeout_s: float = 60.0) -> None:
    """Runs a teardown step on a daemon thread and gives up after ``timeout_s``.

    Why: when Serve's controller actor is already gone, ``serve.shutdown()`` retries
    the controller's graceful shutdown without end ("infinite retries remaining");
    at the end of the session that hang outlasts pytest-timeout, whose thread
    method then ends the whole run with os._exit(1) and no summary. Leaving a
    stuck step behind is harmless there: the process is about to exit.
    """
    done = threading.Event()

    def run() -> None:
        try:
            step()
        finally:
            done.set()

    threading.Thread(target=run, name=f"teardown-{name}", daemon=True).start()
    if not done.wait(timeout_s):
        print(f"ray_support: {name} did not finish in {timeout_s:.0f} s; going on")


class ServedApp:
    """``uvicorn`` in a thread; ``url`` once it accepts connections."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def run_cases_in_own_process(cases: Path, timeout_s: float = 840) -> None:
    """Runs the pytest file ``cases`` in a child pytest process and asserts that each
    of its ``test_`` functions reported PASSED (and at least two exist).

    Why: a Ray driver's teardown can end its process with status 1 before pytest
    prints anything (a race in Ray's core worker); in a child process each case's
    result is read from its own report line, so the race can neither hide a
    failure nor fail a passing run, and the main session keeps its summary.
    """
    expected = len(re.findall(r"^def test_", cases.read_text(), flags=re.M))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(cases)],
        cwd=cases.resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    out = r.stdout + r.stderr
    name = re.escape(cases.name)
    passed = re.findall(rf"^\S*{name}::(\w+) PASSED", r.stdout, flags=re.M)
    assert expected >= 2 and len(passed) == expected, out[-6000:]
    assert not re.search(r" (FAILED|ERROR)\b", r.stdout), out[-6000:]
