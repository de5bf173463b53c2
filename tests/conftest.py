"""Fixtures shared by the whole suite.

``api_client`` is the real embedded build (Vault on SQLite, in-process bus,
hashing embedder) behind the real app, driven over HTTP by a TestClient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings

ADMIN_KEY = "root-test-key"


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    from tests.inference_fakes import register_fake

    register_fake()  # POST /v1/chat on a fake model: no torch, no weights
    return Settings(  # type: ignore[arg-type]
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        embedder={"backend": "hashing"},
        inference={"backend": "fake"},
        trainer={"enabled": False},  # a train command must not load a real model here
        # Tests send many requests quickly; tests/unit/test_rate_limit.py checks the limit.
        limits={"rate_limit_enabled": False},
    )


@pytest.fixture(params=["embedded", "split"])
def api_client(request: pytest.FixtureRequest, api_settings: Settings) -> Iterator[TestClient]:
    """The public API over the vault in process ("embedded"), and over the vault's
    internal HTTP API ("split", as in distributed mode: interface → HttpVault → vault)."""
    if request.param == "embedded":
        from services.embedded import build_embedded

        app, close = build_embedded(api_settings)
        try:
            with TestClient(app) as client:
                yield client
        finally:
            close()
        return

    from services.governance.audit import audit_path
    from services.governance.query import FileAuditReader
    from services.inference.app import create_app as create_inference_app
    from services.inference.chat import ChatEngine
    from services.interface.app import create_app
    from services.vault.app import create_app as create_vault_app
    from services.vault.factory import build_vault
    from shared.clients.inference_http import HttpInference
    from shared.clients.vault_http import HttpVault
    from tests.inference_fakes import FakeBackend

    vault = build_vault(api_settings)
    vault.start()
    try:
        with TestClient(create_vault_app(api_settings, vault)) as internal:
            # Chat goes interface → inference app → vault, each over HTTP.
            engine = ChatEngine(
                api_settings.inference,
                FakeBackend(),
                HttpVault(api_settings.vault, client=internal),
            )
            with TestClient(create_inference_app(api_settings, engine)) as inf:
                inference = HttpInference(api_settings.inference.serve, client=inf)
                vault_api = HttpVault(api_settings.vault, client=internal)
                # No bus here, so no audit subscriber: GET /v1/audit reads an empty log.
                audit = FileAuditReader(audit_path(api_settings))
                app = create_app(api_settings, vault_api, None, inference, audit=audit)
                with TestClient(app) as client:
                    yield client
    finally:
        vault.close()


@pytest.fixture
def make_tenant(api_client: TestClient) -> Callable[[str], dict[str, str]]:
    """Creates a tenant through the API; returns the Authorization header of its key."""

    def make(name: str = "acme") -> dict[str, str]:
        r = api_client.post(
            "/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['api_key']}"}

    return make
