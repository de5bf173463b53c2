"""What is particular to S3BlobStore on the real MinIO (the contract: tests/contract)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from shared.adapters import create_blob_store
from shared.errors import Unavailable
from tests.contract.adapters import reachable
from tests.contract.test_blob_store import MINIO

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _minio() -> None:
    if not reachable("127.0.0.1", 9000):
        pytest.skip("nothing listens on 127.0.0.1:9000 (make infra-up)")


def test_the_bucket_is_created_once_and_objects_are_named_like_files() -> None:
    from shared.adapters.blob_s3 import S3BlobStore

    bucket = f"memgrid-test-{uuid.uuid4().hex[:8]}"
    settings = MINIO.model_copy(update={"url": f"s3://{bucket}"})
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    try:
        assert store.client.bucket_exists(bucket)
        again = create_blob_store(settings)  # an existing bucket is fine
        again.close()
        ref = store.put("t1", "ns1", b"kv cache")
        (obj,) = store.client.list_objects(bucket, recursive=True)
        assert obj.object_name == ref.key == f"t1/ns1/sha256/{ref.digest}"
    finally:
        for obj in store.client.list_objects(bucket, recursive=True):
            store.client.remove_object(bucket, obj.object_name)
        store.client.remove_bucket(bucket)
        store.close()


def test_wrong_credentials_are_unavailable_not_a_crash() -> None:
    bad = MINIO.model_copy(update={"secret_key": SecretStr("not-the-password")})
    with pytest.raises(Unavailable, match="refused"):
        create_blob_store(bad)
