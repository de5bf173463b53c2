"""Parametric memory: LoRA adapters for the tiny model, through the blob store, per request."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.adapters.blob_fs import FileBlobStore
from shared.errors import BadRequest, Conflict, MemgridError, NotFound
from shared.schemas.api import Caller
from shared.settings import Settings

pytestmark = pytest.mark.unit

PROMPT = "Q: where does Ana live?\nA:"
ATOL = 1e-4


@pytest.fixture(scope="module")
def backend() -> Any:
    from services.inference.backends import create_backend

    return create_backend(Settings(inference={"model": "tiny"}))  # type: ignore[arg-type]


def make_adapter(
    seed: int, targets: tuple[str, ...] = ("q_proj", "v_proj")
) -> tuple[dict[str, bytes], Any]:
    """peft's saved files for a LoRA on a fresh tiny model, and that PeftModel."""
    import torch
    from peft import LoraConfig, get_peft_model

    from shared.models.tiny import build_tiny

    model, _ = build_tiny()
    torch.manual_seed(seed)
    # init_lora_weights=False: B is random too, so the adapter changes the logits.
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    peft_model = get_peft_model(model, cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        peft_model.save_pretrained(d)
        files = {f.name: f.read_bytes() for f in Path(d).iterdir() if f.is_file()}
    return {k: files[k] for k in ("adapter_config.json", "adapter_model.safetensors")}, peft_model


def peft_logits(peft_model: Any, backend: Any, prompt: str) -> np.ndarray:
    import torch

    ids = torch.tensor([backend.encode(prompt, bos=True)])
    with torch.inference_mode():
        return peft_model(input_ids=ids).logits[0, -1].float().numpy()


@pytest.fixture(scope="module")
def adapters() -> list[tuple[dict[str, bytes], Any]]:
    return [make_adapter(1), make_adapter(2)]


def registry(backend: Any, tmp_path: Path, max_loaded: int = 8) -> Any:
    from services.inference.adapters import AdapterRegistry, AdapterStore

    return AdapterRegistry(AdapterStore(FileBlobStore(tmp_path)), backend, max_loaded)


def save(
    reg: Any, backend: Any, files: dict[str, bytes], tenant: str = "t1", ns: str = "ns1", **kw: Any
) -> str:
    from services.inference.backends import SourceRef

    args: dict[str, Any] = {"name": "faq", "version": "1", "sources": [SourceRef("c1", 3)]}
    args.update(kw)
    return str(reg.store.save(tenant, ns, files=files, fingerprint=backend.fingerprint, **args))


def test_adapter_round_trip_changes_logits_like_peft(
    backend: Any, adapters: Any, tmp_path: Path
) -> None:
    reg = registry(backend, tmp_path)
    (files, peft_model) = adapters[0]
    aid = save(reg, backend, files)
    assert aid.startswith("faq@1+") and len(aid.split("+")[1]) == 16
    base = backend.next_token_logits(PROMPT)
    active = reg.promote("t1", "ns1", aid)
    assert active.adapter_id == aid and [s.cube_id for s in active.sources] == ["c1"]
    with_adapter = backend.next_token_logits(PROMPT, adapter=active.slot)
    assert np.abs(with_adapter - base).max() > 1e-2
    np.testing.assert_allclose(with_adapter, peft_logits(peft_model, backend, PROMPT), atol=ATOL)
    # The base is untouched after an adapter request.
    np.testing.assert_allclose(backend.next_token_logits(PROMPT), base, atol=1e-6)
    reg.retire("t1", "ns1")
    np.testing.assert_allclose(backend.next_token_logits(PROMPT), base, atol=1e-6)


def test_two_adapters_on_one_replica_chosen_per_request(
    backend: Any, adapters: Any, tmp_path: Path
) -> None:
    reg = registry(backend, tmp_path)
    base = backend.next_token_logits(PROMPT)
    a1 = reg.promote("t1", "ns1", save(reg, backend, adapters[0][0], ns="ns1"))
    a2 = reg.promote("t1", "ns2", save(reg, backend, adapters[1][0], ns="ns2"))
    want1 = peft_logits(adapters[0][1], backend, PROMPT)
    want2 = peft_logits(adapters[1][1], backend, PROMPT)
    for _ in range(2):  # alternate: each request sees its own adapter
        np.testing.assert_allclose(
            backend.next_token_logits(PROMPT, adapter=a2.slot), want2, atol=ATOL
        )
        np.testing.assert_allclose(
            backend.next_token_logits(PROMPT, adapter=a1.slot), want1, atol=ATOL
        )
        np.testing.assert_allclose(backend.next_token_logits(PROMPT), base, atol=1e-6)
    # Interleaved streams: each token's forward picks its own adapter.
    g1 = backend.generate(PROMPT, max_new_tokens=6, adapter=a1.slot)
    g0 = backend.generate(PROMPT, max_new_tokens=6)
    t1 = [next(g1)]
    t0 = [next(g0)]
    t1 += list(g1)
    t0 += list(g0)
    assert "".join(t1) == "".join(backend.generate(PROMPT, max_new_tokens=6, adapter=a1.slot))
    assert "".join(t0) == "".join(backend.generate(PROMPT, max_new_tokens=6))
    with pytest.raises(NotFound):
        backend.next_token_logits(PROMPT, adapter="a_unknown")
    reg.retire("t1", "ns1")
    reg.retire("t1", "ns2")


def test_lru_unloads_the_least_recently_used(backend: Any, adapters: Any, tmp_path: Path) -> None:
    reg = registry(backend, tmp_path, max_loaded=1)
    a1 = reg.promote("t1", "ns1", save(reg, backend, adapters[0][0], ns="ns1"))
    a2 = reg.promote("t1", "ns2", save(reg, backend, adapters[1][0], ns="ns2"))
    assert reg.loaded() == [a2.adapter_id]
    with pytest.raises(NotFound):
        backend.next_token_logits(PROMPT, adapter=a1.slot)
    # A request for ns1 loads it again (and evicts ns2's).
    again = reg.adapter_for(Caller(tenant="t1", principal="p"), ["ns1"])
    assert again is not None and again.adapter_id == a1.adapter_id
    assert reg.loaded() == [a1.adapter_id]
    reg.retire("t1", "ns1")
    reg.retire("t1", "ns2")


def test_fingerprint_mismatch_and_malformed_config_refused(
    backend: Any, adapters: Any, tmp_path: Path
) -> None:
    from services.inference.backends import ModelFingerprint

    reg = registry(backend, tmp_path)
    fp = backend.fingerprint
    other = ModelFingerprint(fp.model_id, "0" * 64, fp.tokenizer_sha256, fp.dtype)
    aid = reg.store.save(
        "t1", "ns1", name="x", version="1", files=adapters[0][0], fingerprint=other
    )
    with pytest.raises(Conflict) as exc:
        reg.promote("t1", "ns1", aid)
    assert exc.value.code == "adapter_fingerprint_mismatch" and exc.value.status == 409
    bad = dict(adapters[0][0], **{"adapter_config.json": b'{"peft_type": "PREFIX_TUNING"}'})
    with pytest.raises(MemgridError) as exc2:
        save(reg, backend, bad)
    assert exc2.value.status == 422 and exc2.value.code == "adapter_invalid"
    # Target modules the model does not have: refused at load, nothing left loaded.
    files, _ = adapters[0]
    wrong = files["adapter_config.json"].replace(b'"q_proj"', b'"no_such_proj"')
    aid2 = save(reg, backend, dict(files, **{"adapter_config.json": wrong}), name="wrong")
    with pytest.raises(MemgridError) as exc3:
        reg.promote("t1", "ns1", aid2)
    assert exc3.value.status == 422
    assert reg.loaded() == [] and reg.current("t1", "ns1") is None
    with pytest.raises(BadRequest):
        reg.promote("t1", "ns1", "not-an-id")


def test_tampered_weights_refused(backend: Any, adapters: Any, tmp_path: Path) -> None:
    reg = registry(backend, tmp_path)
    aid = save(reg, backend, adapters[0][0])
    _, manifest = reg.store.resolve("t1", "ns1", aid)
    key = manifest.files["adapter_model.safetensors"].key
    path = tmp_path / key
    assert path.is_file()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Conflict) as exc:
        reg.promote("t1", "ns1", aid)
    assert exc.value.code == "adapter_digest_mismatch"


def test_isolation_by_tenant_and_namespace(backend: Any, adapters: Any, tmp_path: Path) -> None:
    reg = registry(backend, tmp_path)
    aid = save(reg, backend, adapters[0][0], tenant="t1", ns="ns1")
    # The id alone does not reach the adapter from another tenant or namespace.
    with pytest.raises(NotFound):
        reg.promote("t2", "ns1", aid)
    with pytest.raises(NotFound):
        reg.promote("t1", "ns2", aid)
    reg.promote("t1", "ns1", aid)
    assert reg.adapter_for(Caller(tenant="t2", principal="p"), ["ns1"]) is None
    assert reg.adapter_for(Caller(tenant="t1", principal="p"), ["ns2"]) is None
    hit = reg.adapter_for(Caller(tenant="t1", principal="p"), ["ns2", "ns1"])
    assert hit is not None and hit.namespace == "ns1"
    reg.retire("t1", "ns1")


def test_promoted_event_selects_the_adapter(backend: Any, adapters: Any, tmp_path: Path) -> None:
    from shared.schemas.events import EventEnvelope

    reg = registry(backend, tmp_path)
    aid = save(reg, backend, adapters[0][0])

    def event(topic: str, data: dict[str, Any]) -> EventEnvelope:
        return EventEnvelope(
            source="test", type=f"io.memgrid.{topic}", tenant="t1", namespace="ns1", data=data
        )

    common = {"cube_ids": ["c1"], "target_id": aid, "reason": "stable"}
    reg.handle_event(
        event("memory.promoted", {**common, "from_tier": "plaintext", "to_tier": "parametric"})
    )
    assert reg.current("t1", "ns1") == aid
    reg.handle_event(
        event("memory.demoted", {**common, "from_tier": "parametric", "to_tier": "plaintext"})
    )
    assert reg.current("t1", "ns1") is None and reg.loaded() == []


def test_a_restarted_replica_finds_the_serving_adapter_in_the_vault(
    backend: Any, adapters: Any, tmp_path: Path
) -> None:
    """No promotion seen (a restart): the vault's record says which adapter serves;
    withdrawn ones and ones this replica retired are never brought back."""
    from types import SimpleNamespace

    from services.inference.adapters import AdapterRegistry, AdapterStore
    from shared.schemas.adapters import AdapterState
    from shared.schemas.api import Caller

    states: dict[str, AdapterState] = {}
    calls: list[tuple[str, str | None]] = []

    class Records:
        def list_adapters(self, tenant: str, namespace: str | None = None) -> list[Any]:
            calls.append((tenant, namespace))
            return [SimpleNamespace(id=i, state=s) for i, s in states.items()]

    store = AdapterStore(FileBlobStore(tmp_path))
    reg = AdapterRegistry(store, backend, 4, vault=Records(), recheck_s=0.0)  # type: ignore[arg-type]
    aid = save(reg, backend, adapters[0][0])
    caller = Caller(tenant="t1", principal="p")
    assert reg.adapter_for(caller, ["ns1"]) is None  # nothing recorded
    states[aid] = AdapterState.serving
    active = reg.adapter_for(caller, ["ns1"])
    assert active is not None and active.adapter_id == aid and reg.current("t1", "ns1") == aid
    assert calls == [("t1", "ns1"), ("t1", "ns1")]
    assert reg.adapter_for(caller, ["ns1"]) is not None and len(calls) == 2  # known: no lookup
    reg.retire("t1", "ns1", aid)  # memory.demoted before the record says withdrawn
    assert reg.adapter_for(caller, ["ns1"]) is None
    states[aid] = AdapterState.withdrawn
    assert reg.adapter_for(caller, ["ns1"]) is None
    other = AdapterRegistry(store, backend, 4, vault=Records(), recheck_s=3600)  # type: ignore[arg-type]
    assert other.adapter_for(caller, ["ns1"]) is None
    states[aid] = AdapterState.serving
    assert other.adapter_for(caller, ["ns1"]) is None, "asked again only after recheck_s"


def test_replicas_follow_promotions_on_the_bus(backend: Any, adapters: Any, tmp_path: Path) -> None:
    """build_parametric (what serve.py and local.py call) subscribes the registry:
    a memory.promoted of the parametric tier on the bus makes the adapter current."""
    from services.inference.adapters import build_parametric
    from shared.adapters import create_event_bus
    from shared.schemas.events import MemoryPromoted, make_event
    from shared.schemas.memcube import Tier

    settings = Settings(blob={"url": f"file://{tmp_path}"})  # type: ignore[arg-type]
    bus = create_event_bus(settings.bus)
    try:
        reg = build_parametric(settings, backend, bus)
        assert reg is not None and reg.subscription is not None
        aid = save(reg, backend, adapters[0][0])
        promoted = MemoryPromoted(
            cube_ids=["c1"],
            from_tier=Tier.plaintext,
            to_tier=Tier.parametric,
            target_id=aid,
            reason="stable",
        )
        bus.publish(
            MemoryPromoted.topic,
            make_event(promoted, source="/test/trainer", tenant="t1", namespace="ns1"),
            key="ns1",
        )
        bus.flush()
        assert reg.current("t1", "ns1") == aid
    finally:
        bus.close()


def test_adapters_package_imports_without_torch() -> None:
    code = (
        "import sys, services.inference.adapters; "
        "sys.exit(any(m in sys.modules for m in ('torch', 'transformers', 'peft')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
