"""Schemathesis against /openapi.json, in process, over the real embedded vault.

Every operation gets positive and negative examples (wrong types, missing and
extra fields, odd strings and numbers) sent with a valid tenant key; path ids
and search namespaces are swapped for real ones most of the time so that the
vault is exercised beyond its 404s. The only assertion is schemathesis'
``not_a_server_error``: nothing a client sends may produce a 5xx.

The schema is loaded from the app's own OpenAPI document at import time (the
document does not depend on the vault); the app under test is built per
operation by the ``fuzz_target`` fixture. (``schemathesis.pytest.from_fixture``
would be the natural loader, but it does not work with pytest 9.)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from services.interface.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.fake_vault import FakeVault

pytestmark = pytest.mark.unit

MAX_EXAMPLES = 100

schema = schemathesis.openapi.from_dict(create_app(Settings(), FakeVault()).openapi())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)


@dataclass
class Target:
    app: FastAPI
    tenant: dict[str, str]
    namespace: str
    memory: str


@pytest.fixture
def fuzz_target(api_client: TestClient, make_tenant: Callable[[str], dict[str, str]]) -> Target:
    tenant = make_tenant("fuzz")
    ns = api_client.post("/v1/namespaces", json={"name": "fuzz"}, headers=tenant).json()["id"]
    msgs = [
        {
            "id": f"m{i}",
            "role": "user",
            "content": f"message {i} from yesterday",
            "timestamp": "2023-05-08T10:00:00Z",
        }
        for i in range(5)
    ]
    r = api_client.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}, headers=tenant)
    assert r.status_code == 201
    app = api_client.app
    assert isinstance(app, FastAPI)
    return Target(app, tenant, ns, r.json()["memories"][0]["id"])


def _sometimes(value: Any) -> bool:
    """True for three values in four, deterministically so that hypothesis can replay."""
    return zlib.crc32(repr(value).encode("utf-8", "surrogatepass")) % 4 != 0


def _use_real_ids(case: Any, target: Target) -> None:
    params = case.path_parameters or {}
    if "namespace_id" in params and _sometimes(params["namespace_id"]):
        params["namespace_id"] = target.namespace
    if "memory_id" in params and _sometimes(params["memory_id"]):
        params["memory_id"] = target.memory
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("namespaces"), list) and _sometimes(body):
        body["namespaces"] = [target.namespace]


@schema.parametrize()
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, fuzz_target: Target) -> None:
    _use_real_ids(case, fuzz_target)
    if case.path == "/v1/tenants":
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    else:
        headers = fuzz_target.tenant
    case.call_and_validate(app=fuzz_target.app, headers=headers, checks=[not_a_server_error])
