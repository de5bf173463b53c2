"""Isolation, property-based: random tenants, principals, teams, namespaces, grants
and requests with guessed ids. No response carries a memory or namespace the
caller may not read, and every denial is in the audit log.

The model of who may read what is computed here, independently of the vault:
tenant admins read every namespace of their tenant; anyone else reads the
namespaces granted (any permission implies read) to itself or to a team it is in.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.settings import Settings
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit
PERMS = ["read", "write", "share", "admin"]


@dataclass
class Who:
    tenant: str
    principal: str
    headers: dict[str, str]
    admin: bool
    teams: set[str] = field(default_factory=set)


@dataclass
class World:
    callers: list[Who] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # ns id -> tenant
    memories: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ns, text)
    grants: dict[str, set[str]] = field(default_factory=dict)  # ns id -> grantees

    def readable(self, who: Who) -> set[str]:
        own = {ns for ns, t in self.namespaces.items() if t == who.tenant}
        if who.admin:
            return own
        me = {who.principal} | who.teams
        return {ns for ns in own if self.grants.get(ns, set()) & me}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def build_world(c: TestClient, data: st.DataObject) -> World:
    w = World()
    for t in range(data.draw(st.integers(1, 3), label="tenants")):
        r = c.post(
            "/v1/tenants", json={"name": f"t{t}"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        admin_h = {"Authorization": f"Bearer {ok(r, 201)['api_key']}"}
        tenant_id: str | None = None
        spaces = []
        for n in range(data.draw(st.integers(1, 3), label="namespaces")):
            ns = ok(c.post("/v1/namespaces", json={"name": f"n{n}"}, headers=admin_h), 201)
            tenant_id = ns["tenant"]
            spaces.append(ns["id"])
            w.namespaces[ns["id"]] = ns["tenant"]
            for _ in range(data.draw(st.integers(1, 2), label="memories")):
                text = f"fact-{uuid.uuid4().hex[:12]}"
                body = {"text": text}
                made = ok(
                    c.post(f"/v1/namespaces/{ns['id']}/memories", json=body, headers=admin_h), 201
                )
                w.memories[made["memories"][0]["id"]] = (ns["id"], text)
        assert tenant_id is not None
        w.callers.append(Who(tenant_id, f"{tenant_id}:admin", admin_h, admin=True))
        people = []
        for p in range(data.draw(st.integers(1, 3), label="principals")):
            role = data.draw(st.sampled_from(["member", "agent", "auditor"]), label="role")
            made = ok(
                c.post("/v1/principals", json={"name": f"p{p}", "role": role}, headers=admin_h), 201
            )
            who = Who(
                tenant_id,
                made["principal"]["id"],
                {"Authorization": f"Bearer {made['api_key']}"},
                admin=False,
            )
            people.append(who)
            w.callers.append(who)
        teams = []
        for k in range(data.draw(st.integers(0, 2), label="teams")):
            team = ok(c.post("/v1/teams", json={"name": f"team{k}"}, headers=admin_h), 201)["id"]
            teams.append(team)
            for who in people:
                if data.draw(st.booleans(), label="member?"):
                    ok(c.put(f"/v1/teams/{team}/members/{who.principal}", headers=admin_h))
                    who.teams.add(team)
        grantees = [p.principal for p in people] + teams
        for ns in spaces:
            for g in data.draw(st.lists(st.sampled_from(grantees), max_size=3, unique=True)):
                perms = data.draw(
                    st.lists(st.sampled_from(PERMS), min_size=1, max_size=2, unique=True)
                )
                grant: dict[str, Any] = {"grantee": g, "permissions": perms}
                ok(c.post(f"/v1/namespaces/{ns}/grants", json=grant, headers=admin_h), 201)
                w.grants.setdefault(ns, set()).add(g)
    return w


def request(c: TestClient, w: World, who: Who, data: st.DataObject) -> tuple[Any, set[str]]:
    """One random request; returns the response and the ids the caller itself sent."""
    ids = [*w.memories, str(uuid.uuid4())]
    spaces = [*w.namespaces, f"ns_{uuid.uuid4().hex}"]
    kind = data.draw(
        st.sampled_from(["get", "history", "search", "list", "namespace", "grants", "lineage"])
    )
    if kind in ("get", "history", "lineage"):
        cube = data.draw(st.sampled_from(ids), label="guessed id")
        suffix = {"get": "", "history": "/history", "lineage": "/lineage"}[kind]
        return c.get(f"/v1/memories/{cube}{suffix}", headers=who.headers), {cube}
    if kind == "search":
        asked = data.draw(st.lists(st.sampled_from(spaces), max_size=3, unique=True))
        r = c.post(
            "/v1/search",
            json={"query": "fact", "namespaces": asked, "top_k": 50},
            headers=who.headers,
        )
        return r, set(asked)
    if kind == "list":
        return c.get("/v1/namespaces", headers=who.headers), set()
    ns = data.draw(st.sampled_from(spaces), label="guessed namespace")
    suffix = "" if kind == "namespace" else "/grants"
    return c.get(f"/v1/namespaces/{ns}{suffix}", headers=who.headers), {ns}


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_response_carries_what_the_caller_may_not_read(data: st.DataObject) -> None:
    from services.embedded import build_embedded
    from tests.inference_fakes import register_fake

    register_fake()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Settings.model_validate(
            {
                "data_dir": Path(tmp),
                "admin_key": ADMIN_KEY,
                "embedder": {"backend": "hashing"},
                "inference": {"backend": "fake"},
                "trainer": {"enabled": False},
            }
        )
        app, close = build_embedded(cfg)
        try:
            with TestClient(app) as c:
                w = build_world(c, data)
                denials: dict[str, int] = {}
                for _ in range(data.draw(st.integers(5, 25), label="requests")):
                    who = data.draw(st.sampled_from(w.callers), label="caller")
                    r, sent = request(c, w, who, data)
                    body = r.text
                    readable = w.readable(who)
                    for cube, (ns, text) in w.memories.items():
                        if ns not in readable:
                            assert text not in body, (who, r.request.url, body)
                            if cube not in sent:
                                assert cube not in body, (who, r.request.url, body)
                    for ns in w.namespaces:
                        if ns not in readable and ns not in sent:
                            assert ns not in body, (who, r.request.url, body)
                    if r.status_code in (401, 403, 404):
                        denials[who.tenant] = denials.get(who.tenant, 0) + 1
                app.state.bus.flush()
                for who in w.callers:
                    if not who.admin:
                        continue
                    page = ok(
                        c.get(
                            "/v1/audit",
                            params={"topic": "audit.decision", "outcome": "deny", "limit": 1000},
                            headers=who.headers,
                        )
                    )
                    assert len(page["records"]) == denials.get(who.tenant, 0)
        finally:
            close()
