"""`memgrid adapters list|show|train` against a real embedded server over HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli import main
from shared.schemas.adapters import AdapterDetails, AdapterState
from shared.schemas.commands import TrainAdapter
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import ParametricPayload
from shared.settings import Settings
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit
DIGEST = "0123456789abcdef"


@dataclass
class Server:
    url: str
    app: Any
    key: str
    tenant: str
    ns: str
    cubes: list[dict[str, Any]]
    commands: list[EventEnvelope]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    import uvicorn

    from services.embedded import build_embedded

    settings = Settings(
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        embedder={"backend": "hashing"},  # type: ignore[arg-type]
        trainer={"enabled": False},  # type: ignore[arg-type]  # the test consumes the command
    )
    app, close = build_embedded(settings)
    commands: list[EventEnvelope] = []
    sub = app.state.bus.subscribe("test-trainer", [TrainAdapter.topic], commands.append)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(500):
            if uv.started:
                break
            time.sleep(0.01)
        with httpx.Client(base_url=url) as http:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            r = http.post("/v1/tenants", json={"name": "acme"}, headers=admin)
            key, tenant = r.json()["api_key"], r.json()["id"]
            h = {"Authorization": f"Bearer {key}"}
            ns = http.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
            cubes = []
            for text in ("Ana lives in Lisbon", "Ana likes tea"):
                r = http.post(f"/v1/namespaces/{ns}/memories", json={"text": text}, headers=h)
                cubes += r.json()["memories"]
        yield Server(url, app, key, tenant, ns, cubes, commands)
    finally:
        uv.should_exit = True
        thread.join(10)
        sub.close()
        close()


def _record(s: Server, name: str) -> str:
    aid = f"{name}@1+{DIGEST}"
    payload = ParametricPayload(
        adapter_id=aid,
        blob_key=f"adapters/{aid}/w",
        manifest_key=f"adapters/{aid}/manifest.json",
        base_model_fingerprint="tiny:abc",
        source_refs=[f"{c['id']}@{c['version']}" for c in s.cubes],
    )
    details = AdapterDetails(
        hyperparameters={"rank": 8}, metrics={"loss": 0.25}, data_size=2, duration_s=1.5
    )
    s.app.state.vault.record_adapter(s.tenant, s.ns, payload, details, "trained")
    return aid


def test_list_and_show(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    auth = ["--url", server.url, "--api-key", server.key]
    assert main(["adapters", "list", *auth]) == 0
    assert capsys.readouterr().out.strip() == "no adapters"

    a = _record(server, "lora-a")
    b = _record(server, "lora-b")
    stale = f"{server.cubes[1]['id']}@1"
    server.app.state.vault.set_adapter_state(
        server.tenant, b, AdapterState.stale, "source updated", [stale]
    )
    assert main(["adapters", "list", *auth]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ADAPTER", "STATE", "NAMESPACE", "CREATED", "SOURCES"]
    assert [line.split()[:3] for line in out[1:]] == [
        [b, "stale", server.ns],
        [a, "superseded", server.ns],
    ]
    assert main(["adapters", "list", "--namespace", server.ns, "--json", *auth]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [x["id"] for x in listed["adapters"]] == [b, a]

    assert main(["adapters", "show", b, *auth]) == 0
    shown = capsys.readouterr().out
    assert f"adapter      {b}" in shown and "state        stale: source updated" in shown
    assert "metrics      loss=0.25" in shown and "2 examples in 1.5 s" in shown
    assert f"  {stale}  (stale)" in shown
    assert main(["adapters", "show", a, "--json", *auth]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "superseded"

    assert main(["adapters", "show", f"nope@1+{DIGEST}", *auth]) == 1
    assert "404 adapter_not_found" in capsys.readouterr().err


def test_train_publishes_a_command(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    auth = ["--url", server.url, "--api-key", server.key]
    ids = [c["id"] for c in server.cubes]
    assert main(["adapters", "train", server.ns, *ids, "--reason", "by hand", *auth]) == 0
    out = capsys.readouterr().out
    assert f"training an adapter of namespace {server.ns} from 2 memories" in out
    for _ in range(500):  # the in-process bus delivers on its own thread
        if server.commands:
            break
        time.sleep(0.01)
    (event,) = server.commands
    command = TrainAdapter.model_validate(event.data)
    assert command.cube_ids == ids and command.reason == "by hand"
    assert event.id in out

    assert main(["adapters", "train", server.ns, "no-such-memory", *auth]) == 1
    assert "404" in capsys.readouterr().err


def test_errors(server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["adapters", "list", "--url", server.url]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert main(["adapters", "list", "--url", server.url, "--api-key", "wrong"]) == 1
    assert "401" in capsys.readouterr().err
    key_file = tmp_path / "key"
    key_file.write_text(server.key + "\n")
    assert main(["adapters", "list", "--url", server.url, "--api-key-file", str(key_file)]) == 0
    capsys.readouterr()
    dead = f"http://127.0.0.1:{_free_port()}"
    assert main(["adapters", "list", "--url", dead, "--api-key", "k"]) == 3
    assert "unreachable" in capsys.readouterr().err
    assert main(["adapters", "list", "--url", "ftp://x", "--api-key", "k"]) == 2
