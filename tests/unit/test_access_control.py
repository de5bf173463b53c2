"""AccessControl: grants to principals and teams, implications, key scope,
revoked keys, 404 without read and 403 with read only."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.vault.access import GRANT, TEAM, AccessControl, grant_id
from services.vault.stores import create_graph_store
from shared.errors import Forbidden, NotFound
from shared.ports.graph import GraphStore
from shared.schemas.access import GrantRecord, TeamRecord
from shared.schemas.api import ApiKeyRecord, Caller
from shared.settings import GraphSettings
from tests.contract.graph_support import T0, setup_tenant

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> GraphStore:
    s = create_graph_store(GraphSettings(url=f"sqlite:///{tmp_path}/g.db"), 8)
    setup_tenant(s, "ta", "a1", "a2", "a3")
    setup_tenant(s, "tb", "b1")
    return s


def grant(
    store: GraphStore, ns: str, grantee: str, perms: list[str], kind: str = "principal"
) -> None:
    g = GrantRecord(
        tenant="ta",
        namespace=ns,
        grantee=grantee,
        grantee_kind=kind,  # type: ignore[arg-type]
        permissions=perms,
        granted_by="admin",
        created_at=T0,
    )
    store.put_access_doc("ta", GRANT, grant_id(ns, grantee), g.model_dump_json())


def key(store: GraphStore, prefix: str, principal: str, role: str, **scope: object) -> Caller:
    rec = ApiKeyRecord(
        prefix=prefix,
        key_hash="0" * 64,
        tenant="ta",
        principal=principal,
        role=role,
        created_at=T0,
        **scope,  # type: ignore[arg-type]
    )
    store.put_api_key(rec)
    return Caller(tenant="ta", principal=principal, role=role, key_prefix=prefix)


def test_tenant_admin_reads_everything_of_its_tenant_only(store: GraphStore) -> None:
    ac = AccessControl(store)
    admin = Caller(tenant="ta", principal="system")
    assert ac.readable(admin) == ["a1", "a2", "a3"]
    assert ac.require(admin, "a1", "admin").id == "a1"
    with pytest.raises(NotFound):
        ac.require(admin, "b1", "read")  # another tenant's namespace does not exist


def test_grants_to_principal_and_team_union_with_implications(store: GraphStore) -> None:
    ac = AccessControl(store)
    bot = key(store, "kbot", "ta:bot", "agent")
    assert ac.readable(bot) == []
    team = TeamRecord(id="team1", tenant="ta", name="t", members=["ta:bot"], created_at=T0)
    store.put_access_doc("ta", TEAM, "team1", team.model_dump_json())
    grant(store, "a1", "ta:bot", ["read"])
    grant(store, "a2", "team1", ["write"], kind="team")
    assert ac.readable(bot) == ["a1", "a2"]
    assert ac.permissions(bot, "a2") == {"read", "write"}  # write implies read
    with pytest.raises(Forbidden):
        ac.require(bot, "a1", "write")  # read only: 403
    with pytest.raises(NotFound):
        ac.require(bot, "a3", "read")  # not granted: 404, like an unknown id
    # Leaving the team takes the team's grant away.
    store.put_access_doc(
        "ta", TEAM, "team1", team.model_copy(update={"members": []}).model_dump_json()
    )
    assert ac.readable(bot) == ["a1"]


def test_key_scope_narrows_and_revocation_removes_everything(store: GraphStore) -> None:
    ac = AccessControl(store)
    grant(store, "a1", "ta:ann", ["admin"])
    grant(store, "a2", "ta:ann", ["admin"])
    full = key(store, "kfull", "ta:ann", "member")
    narrow = key(store, "knarrow", "ta:ann", "member", namespaces=["a1"], permissions=["read"])
    assert ac.readable(full) == ["a1", "a2"]
    assert ac.readable(narrow) == ["a1"]
    assert ac.permissions(narrow, "a1") == {"read"}
    with pytest.raises(Forbidden):
        ac.require(narrow, "a1", "write")
    # A caller claiming a wider role than its key holds gets the key's role.
    claimed = Caller(tenant="ta", principal="ta:ann", role="tenant_admin", key_prefix="knarrow")
    assert ac.readable(claimed) == ["a1"]
    rec = store.find_api_key("kfull")
    assert rec is not None
    store.put_api_key(rec.model_copy(update={"revoked": True}))
    assert ac.readable(full) == []
