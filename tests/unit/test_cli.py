"""`memgrid serve` refuses bad configuration before it starts anything."""

from __future__ import annotations

import pytest

from services.cli import main

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
