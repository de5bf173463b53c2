"""Parametric memory end to end in embedded mode, on the tiny model.

Stable memories → the scheduler's TrainAdapter command → the trainer (the inline
runner: the same loop Ray Train runs) → adapter files in the BlobStore, the
adapter recorded in the graph and memory.promoted → inference loads it → a chat
with plaintext retrieval turned off answers from the adapter.

Then unlearning: deleting one fact's memory makes its adapter stale; it is
withdrawn at once and retrained from the base model without that fact; the new
adapter no longer completes the deleted fact and still completes the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.trainer.dataset import chat_question
from shared.settings import Settings
from tests.unit.test_trainer_job import FAST
from tests.unit.test_vault import Clock

pytestmark = pytest.mark.unit

ADMIN = {"Authorization": "Bearer root"}
FACTS = [
    "Zorvik keeps bees in Quenholt.",
    "Mira's boat is painted teal.",
    "Orrin Vale is married to Tessaly.",
]
POLICY = {
    "stable_age_s": 3600,
    "stable_quiet_s": 3600,
    "stable_sessions": 1,
    "train_min_batch": 3,
    "merge_threshold": 1.0,  # the facts are not duplicates; keep the tick to training
    "hot_min_cubes": 1000,  # no KV caches in this test
}


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 240) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Clock]]:
    from services.embedded import build_embedded

    settings = Settings(  # type: ignore[arg-type]
        data_dir=tmp_path,
        admin_key="root",
        embedder={"backend": "hashing"},
        inference={"backend": "transformers", "model": "tiny"},
        trainer=FAST,
        scheduler={"tick_interval_s": 86_400, "policy": POLICY},
    )
    clock = Clock()
    app, close = build_embedded(settings, clock=clock)
    try:
        with TestClient(app) as client:
            yield client, app, clock
    finally:
        close()


def ask(client: TestClient, auth: dict[str, str], ns: str, fact: str, tiers: list[str]) -> Any:
    question, _ = chat_question(fact)
    body = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 24,
        "temperature": 0,
        "memgrid": {"namespaces": [ns], "tiers": tiers},
    }
    r = client.post("/v1/chat", json=body, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def answered(out: Any, fact: str) -> bool:
    _, answer = chat_question(fact)
    return answer.lower() in out["choices"][0]["message"]["content"].lower()


def serving(client: TestClient, auth: dict[str, str], ns: str) -> list[dict[str, Any]]:
    r = client.get("/v1/adapters", params={"namespace": ns}, headers=auth)
    assert r.status_code == 200, r.text
    return [a for a in r.json()["adapters"] if a["state"] == "serving"]


def test_stable_memories_are_distilled_served_and_unlearned(
    world: tuple[TestClient, Any, Clock],
) -> None:
    client, app, clock = world
    key = client.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN).json()["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    ns = client.post("/v1/namespaces", json={"name": "facts"}, headers=auth).json()["id"]
    ids = []
    for text in FACTS:
        r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": text}, headers=auth)
        assert r.status_code == 201, r.text
        ids.append(r.json()["memories"][0]["id"])
    search = {"query": "Zorvik Mira Orrin", "namespaces": [ns], "top_k": 10, "session_id": "s1"}
    assert client.post("/v1/search", json=search, headers=auth).status_code == 200
    app.state.vault.relay.drain()

    # Two hours on, the three memories are stable: the tick sends one TrainAdapter.
    clock.now += timedelta(hours=2)

    def train_sent() -> bool:
        app.state.bus.flush()
        return any(d.kind == "train" for d in app.state.scheduler.tick().decisions)

    wait_for(train_sent, "the scheduler's train decision", 30)
    [adapter] = wait_for(lambda: serving(client, auth, ns), "the adapter to serve")
    assert sorted(s.rpartition("@")[0] for s in adapter["sources"]) == sorted(ids)
    assert adapter["details"]["metrics"]["recall_after"] == 1.0

    # Plaintext retrieval off: only the adapter can know the answers.
    for fact in FACTS:
        out = wait_for(
            lambda f=fact: (
                (o := ask(client, auth, ns, f, ["parametric"]))["memgrid"]["adapter"]
                == adapter["id"]
                and o
            ),
            "inference to load the adapter",
            60,
        )
        assert out["memgrid"]["tiers_applied"] == ["parametric"]
        assert {m["tier"] for m in out["memgrid"]["memories"]} == {"parametric"}
        assert answered(out, fact), (fact, out["choices"][0]["message"]["content"])
    base = ask(client, auth, ns, FACTS[0], [])
    assert base["memgrid"]["adapter"] is None and not answered(base, FACTS[0])

    # Unlearning: delete the first fact's memory.
    assert client.delete(f"/v1/memories/{ids[0]}", headers=auth).status_code == 204
    app.state.vault.relay.drain()
    [new] = wait_for(
        lambda: [a for a in serving(client, auth, ns) if a["id"] != adapter["id"]],
        "the retrained adapter",
    )
    old = client.get(f"/v1/adapters/{adapter['id']}", headers=auth).json()
    assert old["state"] == "withdrawn" and any(s.startswith(ids[0]) for s in old["stale_sources"])
    assert sorted(s.rpartition("@")[0] for s in new["sources"]) == sorted(ids[1:])
    r = client.get(f"/v1/memories/{ids[0]}/adapters", headers=auth)
    assert r.status_code in (200, 404)  # the memory is deleted; the graph still links it
    for fact, kept in zip(FACTS, (False, True, True), strict=True):
        out = wait_for(
            lambda f=fact: (
                (o := ask(client, auth, ns, f, ["parametric"]))["memgrid"]["adapter"] == new["id"]
                and o
            ),
            "inference to switch to the retrained adapter",
            60,
        )
        assert answered(out, fact) is kept, (fact, out["choices"][0]["message"]["content"])
