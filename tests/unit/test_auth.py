"""API keys (shared.security) and authentication (services.interface.auth)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from services.interface.app import create_app
from services.interface.auth import authenticate
from shared.errors import Forbidden, Unauthorized
from shared.security import (
    constant_time_equals,
    generate_api_key,
    hash_api_key,
    parse_api_key,
    verify_api_key,
)
from shared.settings import Settings
from tests.fake_vault import FakeVault

pytestmark = pytest.mark.unit

ADMIN = "root-test-key"


@pytest.fixture
def vault() -> FakeVault:
    return FakeVault()


@pytest.fixture
def settings(tmp_path: object) -> Settings:
    return Settings(data_dir=tmp_path, admin_key=ADMIN)  # type: ignore[arg-type]


def test_generated_keys_parse_and_verify() -> None:
    key, prefix, key_hash = generate_api_key()
    assert key.startswith(f"mg_{prefix}_")
    assert parse_api_key(key) == prefix
    assert key_hash == hash_api_key(key) and len(key_hash) == 64
    assert verify_api_key(key, key_hash)
    assert not verify_api_key(key + "x", key_hash)
    assert generate_api_key()[0] != key


@pytest.mark.parametrize(
    "bad",
    ["", "mg_", "mg_abc", "xx_0123456789ab_" + "a" * 43, "mg_ZZZZ_" + "a" * 43, "mg_ab_short"],
)
def test_malformed_keys_do_not_parse(bad: str) -> None:
    assert parse_api_key(bad) is None


@given(st.text(max_size=300))
def test_parse_and_compare_never_raise(text: str) -> None:
    parse_api_key(text)
    assert constant_time_equals(text, text)
    hash_api_key(text)


def test_authenticate_builds_the_caller(vault: FakeVault, settings: Settings) -> None:
    created = vault.create_tenant("acme")
    caller = authenticate(created.api_key, vault, settings)
    assert caller.tenant == created.id and caller.principal == "admin"


def test_wrong_secret_unknown_prefix_and_garbage_are_401(
    vault: FakeVault, settings: Settings
) -> None:
    key = vault.create_tenant("acme").api_key
    prefix = parse_api_key(key)
    for bad in (key[:-2] + "xx", f"mg_{'0' * 12}_{'a' * 43}", "garbage", "mg_ü_ß" * 3, "\x00"):
        with pytest.raises(Unauthorized):
            authenticate(bad, vault, settings)
    assert prefix in vault.keys


def test_revoked_and_expired_keys_are_401(vault: FakeVault, settings: Settings) -> None:
    key = vault.create_tenant("acme").api_key
    prefix = parse_api_key(key)
    assert prefix
    rec = vault.keys[prefix]
    vault.keys[prefix] = rec.model_copy(update={"revoked": True})
    with pytest.raises(Unauthorized):
        authenticate(key, vault, settings)
    now = datetime.now(UTC)
    vault.keys[prefix] = rec.model_copy(update={"expires_at": now - timedelta(seconds=1)})
    with pytest.raises(Unauthorized):
        authenticate(key, vault, settings)
    vault.keys[prefix] = rec.model_copy(update={"expires_at": now + timedelta(hours=1)})
    assert authenticate(key, vault, settings).tenant == rec.tenant


def test_admin_key_does_not_act_for_a_tenant(vault: FakeVault, settings: Settings) -> None:
    with pytest.raises(Forbidden):
        authenticate(ADMIN, vault, settings)


# --- over HTTP ---------------------------------------------------------------------


def client(settings: Settings, vault: FakeVault) -> TestClient:
    return TestClient(create_app(settings, vault))


def test_tenants_need_the_admin_key(vault: FakeVault, settings: Settings) -> None:
    c = client(settings, vault)
    r = c.post("/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201
    tenant_key = r.json()["api_key"]
    assert parse_api_key(tenant_key)

    r = c.post("/v1/tenants", json={"name": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthorized"
    r = c.post("/v1/tenants", json={"name": "x"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = c.post("/v1/tenants", json={"name": "x"}, headers={"Authorization": f"Basic {ADMIN}"})
    assert r.status_code == 401
    r = c.post("/v1/tenants", json={"name": "x"}, headers={"Authorization": f"Bearer {tenant_key}"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_no_admin_key_configured_means_403(vault: FakeVault, tmp_path: object) -> None:
    c = client(Settings(data_dir=tmp_path), vault)  # type: ignore[arg-type]
    r = c.post("/v1/tenants", json={"name": "acme"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_tenant_routes_need_a_tenant_key(vault: FakeVault, settings: Settings) -> None:
    c = client(settings, vault)
    key = vault.create_tenant("acme").api_key
    assert c.get("/v1/namespaces").status_code == 401
    assert c.get("/v1/namespaces", headers={"Authorization": "Bearer "}).status_code == 401
    bad = {"Authorization": "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B")}
    assert c.get("/v1/namespaces", headers=bad).status_code == 401
    assert c.get("/v1/namespaces", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 403
    ok = c.get("/v1/namespaces", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json() == {"namespaces": []}


def test_non_ascii_authorization_header_is_401(vault: FakeVault, settings: Settings) -> None:
    c = client(settings, vault)
    r = c.get("/v1/namespaces", headers={"Authorization": "Bearer mg_é_ü".encode("latin-1")})  # type: ignore[dict-item]
    assert r.status_code == 401


def test_keys_never_logged(
    vault: FakeVault, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(settings, vault)
    key = vault.create_tenant("acme").api_key
    with caplog.at_level("DEBUG"):
        c.get("/v1/namespaces", headers={"Authorization": f"Bearer {key}"})
        c.get("/v1/namespaces", headers={"Authorization": f"Bearer {key}x"})
    assert key not in caplog.text and ADMIN not in caplog.text
