"""`memgrid serve` refuses bad configuration before it starts anything;
`memgrid scheduler explain` prints a memory's usage (state file or web server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from services.cli import main
from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.scheduler_fakes import T0

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEMGRID_BUS__URL": "nats://127.0.0.1:4222"}, "unknown event bus backend 'nats'"),
        ({"MEMGRID_GRAPH__URL": "mysql://db"}, "unknown graph store backend 'mysql'"),
        ({"MEMGRID_EMBEDER__BACKEND": "x"}, "MEMGRID_EMBEDER__BACKEND"),
        ({"MEMGRID_EMBEDDER__BACKEND": "bert"}, "unknown embedder backend 'bert'"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and message in err


def test_interface_alone_needs_the_vault_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--service", "interface"]) == 2
    assert "MEMGRID_VAULT__URL" in capsys.readouterr().err


# --- memgrid scheduler explain --------------------------------------------------------


def _embedded_world(tmp_path: Path) -> tuple[Any, Any, dict[str, str], str, str]:
    """An embedded server in ``tmp_path`` with one memory searched three times and
    a scheduler tick (the tick flushes the state file the CLI reads)."""
    from services.embedded import build_embedded

    settings = Settings(
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        embedder={"backend": "hashing"},  # type: ignore[arg-type]
        scheduler={"policy": {"hot_min_cubes": 1}, "tick_interval_s": 86_400},  # type: ignore[arg-type]
    )
    app, close = build_embedded(settings, clock=lambda: T0)
    client = TestClient(app)
    r = client.post(
        "/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    h = {"Authorization": f"Bearer {r.json()['api_key']}"}
    ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
    r = client.post(
        f"/v1/namespaces/{ns}/memories", json={"text": "Ana lives in Lisbon"}, headers=h
    )
    cube = r.json()["memories"][0]
    for _ in range(3):
        client.post("/v1/search", json={"query": "Ana Lisbon", "namespaces": [ns]}, headers=h)
    for _ in range(500):  # the in-process bus delivers on its own threads
        usage = client.get(f"/v1/memories/{cube['id']}/usage", headers=h).json()
        if usage["access_count"] == 3:
            break
        time.sleep(0.01)
    assert usage["access_count"] == 3
    app.state.scheduler.tick()
    return client, close, h, cube["id"], cube["tenant"]


def test_explain_reads_the_embedded_state_file_beside_a_running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client, close, h, cube, tenant = _embedded_world(tmp_path)
    try:
        monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
        assert main(["scheduler", "explain", cube]) == 0
        out = capsys.readouterr().out
        assert f"memory     {cube}" in out
        assert "accesses   3 (first 2025-01-01T00:00:00+00:00" in out
        assert "decisions  1" in out and "activate" in out and "hot set of 1 cubes" in out

        # The same view as the API's, scores included when asked at the same time.
        at = ["--at", "2025-01-01T00:00:00"]
        assert main(["scheduler", "explain", cube, "--tenant", tenant, "--json", *at]) == 0
        view = json.loads(capsys.readouterr().out)
        api = client.get(f"/v1/memories/{cube}/usage", headers=h).json()
        assert view == api and view["scores"]["hotness"] == 3.5

        assert main(["scheduler", "explain", cube, "--tenant", "someone-else"]) == 1
        assert "no usage of" in capsys.readouterr().err
    finally:
        client.close()
        close()


def test_explain_without_a_state_file_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
    assert main(["scheduler", "explain", "c1"]) == 1
    assert "no scheduler state at" in capsys.readouterr().err
    assert not (tmp_path / "scheduler.db").exists()  # read-only: nothing created


class _UsageHandler(BaseHTTPRequestHandler):
    """The scheduler's web server as the faust app serves it (/usage/{cube_id})."""

    views: dict[str, dict[str, Any]] = {}

    def do_GET(self) -> None:  # http.server calls it by this name
        url = urlsplit(self.path)
        view = self.views.get(url.path.removeprefix("/usage/"))
        tenant = parse_qs(url.query).get("tenant", [None])[0]
        if view is None or (tenant is not None and view["tenant"] != tenant):
            status, body = 404, {"status": 404, "code": "usage_not_found", "detail": "none"}
        else:
            status, body = 200, view
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_explain_asks_the_scheduler_web_server_given_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
    _UsageHandler.views = {
        "c1": {"cube_id": "c1", "tenant": "t1", "namespace": "ns", "access_count": 4}
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UsageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["scheduler", "explain", "c1", "--url", url, "--json"]) == 0
        view = json.loads(capsys.readouterr().out)
        assert view["id"] == "c1" and view["access_count"] == 4 and view["scores"] is None
        monkeypatch.setenv("MEMGRID_SCHEDULER__URL", url)  # the setting instead of --url
        assert main(["scheduler", "explain", "c1", "--tenant", "t1"]) == 0
        assert "accesses   4" in capsys.readouterr().out
        assert main(["scheduler", "explain", "c1", "--tenant", "t2"]) == 1
        assert main(["scheduler", "explain", "c1", "--url", "ftp://x"]) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_explain_with_the_scheduler_down_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
    assert main(["scheduler", "explain", "c1", "--url", f"http://127.0.0.1:{port}"]) == 3
    assert "scheduler unreachable" in capsys.readouterr().err
    # Distributed mode without a URL: the scheduler's web port on this machine.
    monkeypatch.setenv("MEMGRID_MODE", "distributed")
    monkeypatch.setenv("MEMGRID_SCHEDULER__WEB_PORT", str(port))
    assert main(["scheduler", "explain", "c1"]) == 3
