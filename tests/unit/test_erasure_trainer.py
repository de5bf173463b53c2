"""The trainer's side of an erasure (fake training, real SQLite vault): the adapter
serving from an erased memory is withdrawn and its files deleted before the
retraining, which leaves the memory out; an older adapter (superseded) that
contains it loses its files too; a plain delete deletes no files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.schemas.adapters import AdapterState
from shared.schemas.api import MemoryPatch
from shared.schemas.commands import make_command
from shared.schemas.erasure import ErasureRequest, ErasureSubject
from tests.unit.test_trainer_service import Env, make_env

pytestmark = pytest.mark.unit


class FilesSpy:
    """Stands in for shared.lora.AdapterStore: which adapters' files were deleted,
    and how many trainings had run by then."""

    deleted: list[tuple[str, int]] = []
    calls: Any = None

    def __init__(self, blobs: Any) -> None:
        pass

    def delete(self, tenant: str, namespace: str, adapter_id: str) -> None:
        FilesSpy.deleted.append((adapter_id, len(FilesSpy.calls)))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = make_env(tmp_path)
    FilesSpy.deleted = []
    FilesSpy.calls = e.train.calls
    monkeypatch.setattr("services.trainer.service.AdapterStore", FilesSpy)
    yield e
    e.vault.close()
    e.bus.close()


def test_erasure_withdraws_deletes_files_first_and_retrains_without(env: Env) -> None:
    a, b, c = env.add("Tamsin Orr owns a red kayak.", "Gilvane has two moons.", "Bo likes rye.")
    env.service.handle(make_command(env.command([a, b, c]), tenant=env.caller.tenant))
    [first] = env.vault.list_adapters(env.caller.tenant, env.ns)
    env.vault.update_memory(env.caller, b, MemoryPatch(text="Gilvane has three moons."))
    env.deliver_lifecycle()  # an edit: retrained, the first adapter superseded
    [second] = [r for r in env.vault.list_adapters(env.caller.tenant, env.ns) if r.id != first.id]
    assert len(env.train.calls) == 2

    req = ErasureRequest(subject=ErasureSubject(kind="person", value="tamsin orr"))
    assert env.vault.erase(env.caller, req).adapters_stale == [second.id, first.id]
    env.deliver_lifecycle()

    states = {r.id: r.state for r in env.vault.list_adapters(env.caller.tenant, env.ns)}
    assert states[second.id] == AdapterState.withdrawn
    assert states[first.id] == AdapterState.superseded
    assert [f.cube_id for f in env.train.calls[-1]] == [b, c]
    deleted: dict[str, int] = {}
    for adapter_id, trainings in FilesSpy.deleted:  # when each was first deleted
        deleted.setdefault(adapter_id, trainings)
    assert deleted[second.id] == 2, "the serving adapter's files go before the retraining"
    assert first.id in deleted, "an older adapter holding the memory loses its files too"
    [third] = [i for i, s in states.items() if s == AdapterState.serving]
    assert third not in deleted


def test_a_plain_delete_keeps_the_files(env: Env) -> None:
    a, b = env.add("Pell Arden sails the Mirrow.", "Hask Vale grows blue pears.")
    env.service.handle(make_command(env.command([a, b]), tenant=env.caller.tenant))
    env.vault.delete_memory(env.caller, a)
    env.deliver_lifecycle()
    assert FilesSpy.deleted == []
