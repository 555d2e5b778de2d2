"""A small output goes up in one PutObject carrying its Content-MD5, which the store checks: nothing is read back,
and a store that says the body it got does not match (BadDigest) fails the copy as a storage error worth a retry."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from botocore.stub import ANY, Stubber

from shared.errors import StorageUnavailable
from shared.settings import Settings
from shared.storage import Storage
from shared.storage.client import make_s3_client

BODY = b"x" * 1000


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presigning the output's URL signs with these; no request leaves the process."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def storage_and_stubber() -> tuple[Storage, Stubber]:
    settings = Settings(s3_bucket="outputs", s3_endpoint_url="http://s3.test")
    client = make_s3_client(settings)
    return Storage(settings, client=client), Stubber(client)


def vendor() -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=BODY)))


def expected_put() -> dict[str, object]:
    return {
        "Bucket": "outputs",
        "Key": "out.bin",
        "Body": ANY,
        "ContentType": ANY,
        "ContentMD5": base64.b64encode(hashlib.md5(BODY).digest()).decode(),
        "Metadata": {"sha256": hashlib.sha256(BODY).hexdigest()},
    }


def test_one_put_with_its_content_md5_and_no_read_back() -> None:
    storage, stubber = storage_and_stubber()
    stubber.add_response("put_object", {"ETag": '"e"'}, expected_put())
    with stubber:  # a HeadObject, or any call not queued here, would fail the copy
        output = storage.copy_from_url(vendor(), "https://vendor.test/out.bin", "out.bin")
    stubber.assert_no_pending_responses()
    assert output.size == len(BODY) and output.sha256 == hashlib.sha256(BODY).hexdigest()


def test_a_body_the_store_found_corrupted_is_a_storage_error_worth_a_retry() -> None:
    storage, stubber = storage_and_stubber()
    stubber.add_client_error("put_object", "BadDigest", "The Content-MD5 you specified did not match", 400)
    with stubber, pytest.raises(StorageUnavailable, match=r"storage refused writing s3://outputs/out\.bin: BadDigest"):
        storage.copy_from_url(vendor(), "https://vendor.test/out.bin", "out.bin")
