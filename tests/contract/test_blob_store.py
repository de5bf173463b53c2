"""BlobStore contract: every adapter (filesystem today, S3/MinIO later) passes this suite.

See shared/ports/blob.py for the contract itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import create_blob_store
from shared.errors import MemgridError, NotFound
from shared.ports.blob import BlobStore, blob_key
from shared.settings import BlobSettings
from tests.contract.adapters import AdapterCase, new_id, params

pytestmark = pytest.mark.contract

# The MinIO that infra/local starts (its default root credentials; the same
# MGINFRA_* variables override both). Tests use random tenants, so one bucket is
# shared by every run.
MINIO = BlobSettings(
    url="s3://memgrid-test",
    endpoint="127.0.0.1:9000",
    access_key=os.environ.get("MGINFRA_MINIO_ROOT_USER", "memgrid"),  # type: ignore[arg-type]
    secret_key=os.environ.get("MGINFRA_MINIO_ROOT_PASSWORD", "memgrid-dev-password"),  # type: ignore[arg-type]
)

BLOB_STORES: list[AdapterCase[BlobStore]] = [
    AdapterCase("file", lambda tmp: create_blob_store(BlobSettings(url=f"file://{tmp}/blobs"))),
    AdapterCase("minio", lambda tmp: create_blob_store(MINIO), requires=("127.0.0.1", 9000)),
]


@pytest.fixture(params=params(BLOB_STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    case: AdapterCase[BlobStore] = request.param
    s = case.build(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def tenants() -> tuple[str, str]:
    return new_id("ta"), new_id("tb")


def test_put_get_round_trip_and_key_shape(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    data = b"\x00\x01 kv cache bytes \xff" * 100
    ref = store.put(a, "ns1", data)
    digest = hashlib.sha256(data).hexdigest()
    assert ref.digest == digest
    assert ref.key == blob_key(a, "ns1", digest)
    assert ref.size == len(data)
    assert store.get(a, ref.key) == data
    assert store.exists(a, ref.key)


def test_same_bytes_are_stored_once(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    r1 = store.put(a, "ns1", b"same")
    r2 = store.put(a, "ns1", b"same")
    assert r1 == r2
    assert [r.key for r in store.list(a)] == [r1.key]
    r3 = store.put(a, "ns2", b"same")  # namespaces are separate prefixes
    assert r3.key != r1.key
    assert {r.key for r in store.list(a)} == {r1.key, r3.key}


def test_blobs_are_immutable(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    r1 = store.put(a, "ns1", b"version one")
    r2 = store.put(a, "ns1", b"version two")
    assert r1.key != r2.key
    assert store.get(a, r1.key) == b"version one"
    assert store.get(a, r2.key) == b"version two"


def test_empty_blob(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    ref = store.put(a, "ns1", b"")
    assert ref.size == 0 and store.get(a, ref.key) == b""


def test_other_tenant_cannot_read_list_or_delete(
    store: BlobStore, tenants: tuple[str, str]
) -> None:
    a, b = tenants
    ref = store.put(a, "ns1", b"tenant a secret")
    with pytest.raises(NotFound):
        store.get(b, ref.key)
    assert not store.exists(b, ref.key)
    assert store.list(b) == []
    assert store.list(b, prefix=f"{a}/") == []
    store.delete(b, ref.key)
    assert store.get(a, ref.key) == b"tenant a secret"
    # Rewriting A's key under B's prefix does not reach A's blob either.
    forged = ref.key.replace(a, b, 1)
    with pytest.raises(NotFound):
        store.get(b, forged)


@pytest.mark.parametrize(
    "key",
    [
        "../{a}/ns1/sha256/{d}",
        "{a}/../{a}/ns1/sha256/{d}",
        "{a}/ns1/../ns1/sha256/{d}",
        "{a}/ns1/sha256/../../../etc/passwd",
        "/{a}/ns1/sha256/{d}",
        "{a}//ns1/sha256/{d}",
        "{a}/ns1/sha256/{d}/",
        "{a}\\ns1\\sha256\\{d}",
        "{a}/ns1/sha256/{d}\x00",
        "{a}/./sha256/{d}",
        "{a}/ns1/sha256/{D}",
        "{a}/ns1/sha256/",
        "{a}",
        "",
    ],
)
def test_malformed_or_traversing_keys_are_not_found(
    store: BlobStore, tenants: tuple[str, str], key: str
) -> None:
    a, _ = tenants
    ref = store.put(a, "ns1", b"payload")
    bad = key.format(a=a, d=ref.digest, D=ref.digest.upper())
    with pytest.raises(NotFound):
        store.get(a, bad)
    assert not store.exists(a, bad)
    store.delete(a, bad)  # harmless
    assert store.get(a, ref.key) == b"payload"


@pytest.mark.parametrize(
    "tenant, namespace", [("..", "ns"), ("t", ".."), ("t/x", "ns"), ("t", "a/b")]
)
def test_put_refuses_path_like_ids(store: BlobStore, tenant: str, namespace: str) -> None:
    with pytest.raises(MemgridError):
        store.put(tenant, namespace, b"x")


def test_delete_is_idempotent(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    ref = store.put(a, "ns1", b"to erase")
    store.delete(a, ref.key)
    store.delete(a, ref.key)
    assert not store.exists(a, ref.key)
    with pytest.raises(NotFound):
        store.get(a, ref.key)
    assert store.list(a) == []
    again = store.put(a, "ns1", b"to erase")  # a deleted blob can be stored again
    assert store.get(a, again.key) == b"to erase"


def test_list_by_prefix(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    r1 = store.put(a, "ns1", b"one")
    r2 = store.put(a, "ns1", b"two")
    r3 = store.put(a, "ns2", b"three")
    assert {r.key for r in store.list(a)} == {r1.key, r2.key, r3.key}
    listed = store.list(a, prefix=f"{a}/ns1/")
    assert {r.key for r in listed} == {r1.key, r2.key}
    assert {(r.digest, r.size) for r in listed} == {(r1.digest, 3), (r2.digest, 3)}
    assert store.list(a, prefix=f"{a}/ns3/") == []


def test_concurrent_puts_of_the_same_bytes(store: BlobStore, tenants: tuple[str, str]) -> None:
    a, _ = tenants
    data = bytes(range(256)) * 4096
    keys: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            keys.append(store.put(a, "ns1", data).key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(keys)) == 1
    assert store.get(a, keys[0]) == data
    assert len(store.list(a)) == 1
