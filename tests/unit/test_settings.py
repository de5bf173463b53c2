"""The settings tree refuses unknown names and unknown backends."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.registry import Registry, scheme_of
from shared.settings import Settings, load_settings, unknown_env_settings

pytestmark = pytest.mark.unit


def test_unknown_env_variable_is_named_with_a_suggestion() -> None:
    problems = unknown_env_settings({"MEMGRID_PROT": "9000", "MEMGRID_PORT": "1", "HOME": "/"})
    assert problems == ["MEMGRID_PROT (did you mean MEMGRID_PORT?)"]


def test_nested_names_are_known() -> None:
    env = {"MEMGRID_SEARCH__DENSE_WEIGHT": "2", "MEMGRID_GRAPH__URL": "sqlite:///x.db"}
    assert unknown_env_settings(env) == []
    assert unknown_env_settings({"MEMGRID_SEARCH__DENSE_WEIGTH": "2"})[0].startswith(
        "MEMGRID_SEARCH__DENSE_WEIGTH (did you mean MEMGRID_SEARCH__DENSE_WEIGHT"
    )


def test_load_settings_stops_on_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMGRID_NOPE", "1")
    with pytest.raises(ConfigError, match="MEMGRID_NOPE"):
        load_settings()


def test_load_settings_reads_port_and_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("MEMGRID_PORT", "9123")
    monkeypatch.setenv("MEMGRID_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.port == 9123
    assert s.graph.url == f"sqlite:///{tmp_path}/graph.db"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMGRID_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="MEMGRID_PORT"):
        load_settings()


def test_unknown_fields_in_code_are_refused() -> None:
    with pytest.raises(Exception, match="extra"):
        Settings(search={"dense_wieght": 1})  # type: ignore[arg-type]


def test_registry_refuses_unknown_backend_and_lists_known() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("one", lambda: 1)
    assert reg.create("one") == 1
    with pytest.raises(ConfigError, match=r"unknown widget backend 'two'; known: one"):
        reg.create("two")


def test_scheme_of() -> None:
    assert scheme_of("kafka://127.0.0.1:9092") == "kafka"
    with pytest.raises(ConfigError):
        scheme_of("127.0.0.1:9092")
