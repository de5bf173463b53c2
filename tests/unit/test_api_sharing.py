"""Sharing through the API: an agent of team B reads team A's namespace only
while a grant allows it; roles, key scope, rotation and revocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit
Tenant = Callable[[str], dict[str, str]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def principal(
    c: TestClient, admin: dict[str, str], name: str, role: str, kind: str = "user"
) -> tuple[str, dict[str, str]]:
    body = ok(
        c.post("/v1/principals", json={"name": name, "role": role, "kind": kind}, headers=admin),
        201,
    )
    return body["principal"]["id"], bearer(body["api_key"])


def team(c: TestClient, admin: dict[str, str], name: str, *members: str) -> str:
    team_id = ok(c.post("/v1/teams", json={"name": name}, headers=admin), 201)["id"]
    for m in members:
        ok(c.put(f"/v1/teams/{team_id}/members/{m}", headers=admin))
    return str(team_id)


def search(
    c: TestClient, h: dict[str, str], query: str, namespaces: list[str] | None = None
) -> Any:
    body: dict[str, Any] = {"query": query}
    if namespaces is not None:
        body["namespaces"] = namespaces
    return c.post("/v1/search", json=body, headers=h)


def test_an_agent_of_team_b_reads_team_a_namespace_only_while_granted(
    api_client: TestClient, make_tenant: Tenant
) -> None:
    c, admin = api_client, make_tenant("acme")
    alice, alice_h = principal(c, admin, "alice", "member")
    bot, bot_h = principal(c, admin, "bot", "agent", kind="agent")
    team(c, admin, "team-a", alice)
    team_b = team(c, admin, "team-b", bot)

    ns = ok(c.post("/v1/namespaces", json={"name": "a-notes"}, headers=alice_h), 201)["id"]
    cube = ok(
        c.post(
            f"/v1/namespaces/{ns}/memories",
            json={"text": "the launch moved to May"},
            headers=alice_h,
        ),
        201,
    )["memories"][0]["id"]

    # Before any grant: the namespace and the memory do not exist for the agent.
    assert search(c, bot_h, "launch", [ns]).status_code == 404
    assert ok(search(c, bot_h, "launch"))["results"] == []
    assert c.get(f"/v1/memories/{cube}", headers=bot_h).status_code == 404
    assert c.get(f"/v1/namespaces/{ns}", headers=bot_h).status_code == 404
    assert ns not in [n["id"] for n in ok(c.get("/v1/namespaces", headers=bot_h))["namespaces"]]
    # The agent cannot share what it cannot see, nor create namespaces.
    assert (
        c.post(
            f"/v1/namespaces/{ns}/grants",
            json={"grantee": team_b, "permissions": ["read"]},
            headers=bot_h,
        ).status_code
        == 404
    )
    assert c.post("/v1/namespaces", json={"name": "x"}, headers=bot_h).status_code == 403

    # Alice (admin of her namespace) shares it with team B, read only.
    grant = ok(
        c.post(
            f"/v1/namespaces/{ns}/grants",
            json={"grantee": team_b, "permissions": ["read"]},
            headers=alice_h,
        ),
        201,
    )
    assert grant["grantee_kind"] == "team"
    assert [
        g["grantee"] for g in ok(c.get(f"/v1/namespaces/{ns}/grants", headers=alice_h))["grants"]
    ].count(team_b) == 1
    hits = ok(search(c, bot_h, "launch"))["results"]  # every readable namespace
    assert [h["id"] for h in hits] == [cube]
    assert ok(search(c, bot_h, "launch", [ns]))["results"][0]["text"] == "the launch moved to May"
    assert ok(c.get(f"/v1/memories/{cube}", headers=bot_h))["id"] == cube
    # Read only: writing answers 403 (it may see the namespace), and nothing is written.
    r = c.post(f"/v1/namespaces/{ns}/memories", json={"text": "bot was here"}, headers=bot_h)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    assert c.patch(f"/v1/memories/{cube}", json={"text": "x"}, headers=bot_h).status_code == 403
    assert c.delete(f"/v1/memories/{cube}", headers=bot_h).status_code == 403
    assert c.get(f"/v1/namespaces/{ns}/grants", headers=bot_h).status_code == 403

    # Revoked: gone again.
    ok(c.delete(f"/v1/namespaces/{ns}/grants/{team_b}", headers=alice_h), 204)
    assert search(c, bot_h, "launch", [ns]).status_code == 404
    assert ok(search(c, bot_h, "launch"))["results"] == []
    assert c.get(f"/v1/memories/{cube}", headers=bot_h).status_code == 404


def test_member_leaving_the_team_loses_access_and_a_direct_grant_works(
    api_client: TestClient, make_tenant: Tenant
) -> None:
    c, admin = api_client, make_tenant("acme")
    _, alice_h = principal(c, admin, "alice", "member")
    bob, bob_h = principal(c, admin, "bob", "member")
    team_b = team(c, admin, "team-b", bob)
    ns = ok(c.post("/v1/namespaces", json={"name": "n"}, headers=alice_h), 201)["id"]
    ok(
        c.post(
            f"/v1/namespaces/{ns}/grants",
            json={"grantee": team_b, "permissions": ["write"]},
            headers=alice_h,
        ),
        201,
    )
    ok(c.post(f"/v1/namespaces/{ns}/memories", json={"text": "bob wrote this"}, headers=bob_h), 201)
    ok(c.delete(f"/v1/teams/{team_b}/members/{bob}", headers=admin))
    assert search(c, bob_h, "wrote", [ns]).status_code == 404
    # A direct grant to the principal; share lets bob grant read/write but not admin.
    ok(
        c.post(
            f"/v1/namespaces/{ns}/grants",
            json={"grantee": bob, "permissions": ["share"]},
            headers=alice_h,
        ),
        201,
    )
    assert ok(search(c, bob_h, "wrote", [ns]))["results"]
    r = c.post(
        f"/v1/namespaces/{ns}/grants",
        json={"grantee": bob, "permissions": ["admin"]},
        headers=bob_h,
    )
    assert r.status_code == 403


def test_key_scope_rotation_revocation_and_roles(
    api_client: TestClient, make_tenant: Tenant
) -> None:
    c, admin = api_client, make_tenant("acme")
    carol, carol_h = principal(c, admin, "carol", "member")
    ns1 = ok(c.post("/v1/namespaces", json={"name": "one"}, headers=carol_h), 201)["id"]
    ns2 = ok(c.post("/v1/namespaces", json={"name": "two"}, headers=carol_h), 201)["id"]
    for ns in (ns1, ns2):
        ok(
            c.post(
                f"/v1/namespaces/{ns}/memories", json={"text": f"fact in {ns}"}, headers=carol_h
            ),
            201,
        )
    # A key narrowed to ns1, read only.
    scoped = ok(
        c.post(
            f"/v1/principals/{carol}/keys",
            json={"namespaces": [ns1], "permissions": ["read"]},
            headers=carol_h,
        ),
        201,
    )
    assert "key_hash" not in scoped["key"] and scoped["api_key"].startswith("mg_")
    sh = bearer(scoped["api_key"])
    assert {h["namespace"] for h in ok(search(c, sh, "fact"))["results"]} == {ns1}
    assert search(c, sh, "fact", [ns2]).status_code == 404
    r = c.post(f"/v1/namespaces/{ns1}/memories", json={"text": "no"}, headers=sh)
    assert r.status_code == 403
    # Keys are listed without secrets.
    keys = ok(c.get(f"/v1/principals/{carol}/keys", headers=carol_h))["keys"]
    assert len(keys) == 2 and all("api_key" not in k and "key_hash" not in k for k in keys)
    # Rotation without grace: the new key works, the old one is refused.
    rotated = ok(
        c.post(
            f"/v1/keys/{scoped['key']['prefix']}/rotate", json={"grace_seconds": 0}, headers=carol_h
        ),
        201,
    )
    assert ok(search(c, bearer(rotated["api_key"]), "fact"))["results"]
    assert search(c, sh, "fact").status_code == 401
    # Revocation.
    ok(c.delete(f"/v1/keys/{rotated['key']['prefix']}", headers=carol_h), 204)
    assert search(c, bearer(rotated["api_key"]), "fact").status_code == 401
    # Roles: an auditor has no memory data; members cannot manage principals.
    _, aud_h = principal(c, admin, "audra", "auditor")
    assert ok(search(c, aud_h, "fact"))["results"] == []
    assert c.get("/v1/principals", headers=carol_h).status_code == 403
    # Disabling a principal revokes its keys.
    ok(c.patch(f"/v1/principals/{carol}", json={"disabled": True}, headers=admin))
    assert search(c, carol_h, "fact").status_code == 401


def test_another_tenants_principals_teams_and_keys_are_404(
    api_client: TestClient, make_tenant: Tenant
) -> None:
    c = api_client
    a, b = make_tenant("a"), make_tenant("b")
    pa, _ = principal(c, a, "alice", "member")
    team_a = team(c, a, "ta")
    keys = ok(c.get(f"/v1/principals/{pa}/keys", headers=a))["keys"]
    assert c.get(f"/v1/principals/{pa}", headers=b).status_code == 404
    assert c.get(f"/v1/principals/{pa}/keys", headers=b).status_code == 404
    assert c.put(f"/v1/teams/{team_a}/members/{pa}", headers=b).status_code == 404
    assert c.delete(f"/v1/keys/{keys[0]['prefix']}", headers=b).status_code == 404
    ns_b = ok(c.post("/v1/namespaces", json={"name": "n"}, headers=b), 201)["id"]
    r = c.post(
        f"/v1/namespaces/{ns_b}/grants", json={"grantee": pa, "permissions": ["read"]}, headers=b
    )
    assert r.status_code == 404 and r.json()["code"] == "grantee_not_found"
