"""Storage against moto's S3 server over real HTTP, copying from a real local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from shared.errors import DownloadFailed, DownloadUnavailable, InvalidRequest, StorageError, StorageUnavailable
from shared.settings import Settings
from shared.storage import MAX_INPUT_BYTES, Storage, StorageInputs, extension_for
from tests.support.byteserver import ByteServer, expected_sha256, stream_bytes
from tests.support.processes import free_port

MiB = 1024 * 1024
PART = 8 * MiB


@pytest.fixture(scope="module")
def byte_server() -> Iterator[ByteServer]:
    with ByteServer() as server:
        yield server


@pytest.fixture
def settings(moto_endpoint: str) -> Settings:
    return Settings(
        s3_endpoint_url=moto_endpoint,
        s3_bucket=f"test-{uuid.uuid4().hex[:12]}",
        s3_region="us-east-1",
        upload_part_bytes=PART,
        download_url_expiry_seconds=600,
    )


@pytest.fixture
def storage(settings: Settings) -> Storage:
    storage = Storage(settings)
    storage.ensure_bucket()
    return storage


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


class CallCounter:
    """Counts the S3 operations a client makes, through botocore's own event hooks."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call.s3", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.calls.append(str(model.name))


def stored_bytes(storage: Storage, key: str) -> bytes:
    return bytes(storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"].read())


def test_ensure_bucket_twice_is_fine(storage: Storage) -> None:
    storage.ensure_bucket()
    assert storage.client.head_bucket(Bucket=storage.bucket)


def test_small_object_is_one_put(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    counter = CallCounter(storage.client)
    key = storage.output_key("job1", 0, "png")
    output = storage.copy_from_url(http, byte_server.url(1000, ctype="image/png"), key)
    # one PutObject, its Content-MD5 checked by the store, and nothing read back (no HeadObject)
    assert counter.calls == ["PutObject"]
    data = b"".join(stream_bytes(1000))
    assert output.key == "outputs/job1/0.png"
    assert (output.bucket, output.size, output.content_type) == (storage.bucket, 1000, "image/png")
    assert output.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_bytes(storage, key) == data
    head = storage.client.head_object(Bucket=storage.bucket, Key=key)
    assert head["Metadata"]["sha256"] == output.sha256
    assert head["ContentType"] == "image/png"


def test_exactly_one_part_is_still_one_put(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    counter = CallCounter(storage.client)
    output = storage.copy_from_url(http, byte_server.url(PART), "exact.bin")
    assert output.size == PART and output.sha256 == expected_sha256(PART)
    assert "CreateMultipartUpload" not in counter.calls


def test_one_byte_over_a_part_is_multipart(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    counter = CallCounter(storage.client)
    output = storage.copy_from_url(http, byte_server.url(PART + 1), "over.bin")
    assert output.size == PART + 1 and output.sha256 == expected_sha256(PART + 1)
    assert counter.calls.count("UploadPart") == 2


def test_empty_body(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    output = storage.copy_from_url(http, byte_server.url(0), "empty.bin")
    assert output.size == 0 and output.sha256 == hashlib.sha256(b"").hexdigest()


def test_20_mib_multipart_copy(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    size = 20 * MiB
    counter = CallCounter(storage.client)
    url = byte_server.url(size, name="clip.mp4")
    output = storage.copy_from_url(http, url, lambda ct: storage.output_key("job2", 0, extension_for(ct, url)))
    assert output.key == "outputs/job2/0.mp4"
    assert output.content_type == "video/mp4"  # no Content-Type header: guessed from the URL
    assert output.size == size
    assert output.sha256 == expected_sha256(size)
    assert counter.calls.count("UploadPart") == 3
    assert "CompleteMultipartUpload" in counter.calls
    assert hashlib.sha256(stored_bytes(storage, output.key)).hexdigest() == output.sha256
    head = storage.client.head_object(Bucket=storage.bucket, Key=output.key)
    assert head["ContentLength"] == size
    assert head["Metadata"]["sha256"] == output.sha256
    assert head["ContentType"] == "video/mp4"


def test_metadata_by_multipart_self_copy(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    """Objects above CopyObject's 5 GiB limit get their metadata by UploadPartCopy; the limit is lowered here."""
    storage.max_copy_object_bytes = PART
    counter = CallCounter(storage.client)
    output = storage.copy_from_url(http, byte_server.url(20 * MiB), "selfcopy.bin")
    assert counter.calls.count("UploadPartCopy") == 3
    assert hashlib.sha256(stored_bytes(storage, output.key)).hexdigest() == expected_sha256(20 * MiB)
    head = storage.client.head_object(Bucket=storage.bucket, Key=output.key)
    assert head["Metadata"]["sha256"] == output.sha256 and head["ContentLength"] == 20 * MiB


def test_presigned_output_url_downloads(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    output = storage.copy_from_url(http, byte_server.url(4096, ctype="video/mp4; codecs=avc1"), "dl.mp4")
    assert output.content_type == "video/mp4"
    answer = httpx.get(output.url)
    assert answer.status_code == 200
    assert answer.content == b"".join(stream_bytes(4096))
    assert "X-Amz-Expires=600" in output.url


@pytest.mark.parametrize("status", [403, 404, 410])
def test_dead_link_is_download_failed(
    status: int, storage: Storage, http: httpx.Client, byte_server: ByteServer
) -> None:
    url = byte_server.url(100, status=status, sig="SECRET-SIGNATURE")
    with pytest.raises(DownloadFailed) as caught:
        storage.copy_from_url(http, url, "dead.bin")
    message = str(caught.value)
    assert "127.0.0.1" in message and f"HTTP {status}" in message
    assert "SECRET" not in message and "/bytes/" not in message


def test_other_4xx_is_download_failed(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    with pytest.raises(DownloadFailed, match="HTTP 400"):
        storage.copy_from_url(http, byte_server.url(100, status=400), "bad.bin")


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_transient(status: int, storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    with pytest.raises(DownloadUnavailable, match=rf"127\.0\.0\.1 answered HTTP {status}"):
        storage.copy_from_url(http, byte_server.url(100, status=status), "busy.bin")


def test_connection_refused_is_transient(storage: Storage, http: httpx.Client) -> None:
    with pytest.raises(DownloadUnavailable, match=r"127\.0\.0\.1"):
        storage.copy_from_url(http, f"http://127.0.0.1:{free_port()}/x.mp4", "refused.bin")


def test_unsupported_scheme_is_download_failed(storage: Storage, http: httpx.Client) -> None:
    with pytest.raises(DownloadFailed):
        storage.copy_from_url(http, "ftp://example.com/x.mp4", "ftp.bin")


def test_failure_mid_stream_aborts_the_upload(storage: Storage, http: httpx.Client, byte_server: ByteServer) -> None:
    counter = CallCounter(storage.client)
    with pytest.raises(DownloadUnavailable, match=r"127\.0\.0\.1"):
        storage.copy_from_url(http, byte_server.url(20 * MiB, cut=12 * MiB), "cut.bin")
    assert counter.calls.count("UploadPart") == 1  # the upload had really begun
    assert "AbortMultipartUpload" in counter.calls
    assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []
    assert storage.client.list_objects_v2(Bucket=storage.bucket).get("KeyCount") == 0


def test_missing_bucket_is_storage_error(settings: Settings, http: httpx.Client, byte_server: ByteServer) -> None:
    storage = Storage(settings)  # ensure_bucket never called
    with pytest.raises(StorageError, match="NoSuchBucket"):
        storage.copy_from_url(http, byte_server.url(100), "nobucket.bin")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        storage.copy_from_url(http, byte_server.url(PART + 10), "nobucket-multipart.bin")


def test_unreachable_endpoint_is_transient(settings: Settings, http: httpx.Client, byte_server: ByteServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=dead, config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2)
    )
    storage = Storage(settings.model_copy(update={"s3_endpoint_url": dead}), client=client)
    with pytest.raises(StorageUnavailable):
        storage.copy_from_url(http, byte_server.url(100), "unreachable.bin")


def test_input_round_trip(storage: Storage, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    ref = storage.upload_input(image, "up123")
    assert ref == f"s3://{storage.bucket}/outputs/inputs/up123/cat.png"

    url = storage.presign_ref(ref)
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == image.read_bytes()

    data_uri = storage.data_uri_for_ref(ref)
    head, _, payload = data_uri.partition(",")
    assert head == "data:image/png;base64"
    assert base64.b64decode(payload) == image.read_bytes()

    inputs = StorageInputs(storage)
    assert inputs.as_data_uri(ref) == data_uri
    assert httpx.get(inputs.as_url(ref)).content == image.read_bytes()
    for passthrough in ("https://example.com/a.png", "data:image/png;base64,AAAA"):
        assert inputs.as_url(passthrough) == passthrough
        assert inputs.as_data_uri(passthrough) == passthrough


def test_upload_input_refusals(storage: Storage, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)
    with pytest.raises(InvalidRequest, match="limit"):
        storage.upload_input(big, "up1")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InvalidRequest, match="image"):
        storage.upload_input(notes, "up1")
    with pytest.raises(InvalidRequest):
        storage.upload_input(tmp_path / "missing.png", "up1")
    with pytest.raises(InvalidRequest):
        storage.upload_input(notes, "../escape")


@pytest.mark.parametrize(
    "ref",
    [
        "s3://someone-elses-bucket/outputs/inputs/x/a.png",
        "s3://{bucket}/outputs/job/0.mp4",
        "s3://{bucket}/outputs/inputs/../secret.png",
        "https://example.com/a.png",
    ],
)
def test_refs_outside_our_inputs_are_refused(storage: Storage, ref: str) -> None:
    with pytest.raises(InvalidRequest):
        storage.presign_ref(ref.format(bucket=storage.bucket))


def test_missing_input_is_storage_error(storage: Storage) -> None:
    with pytest.raises(StorageError, match="NoSuchKey"):
        storage.data_uri_for_ref(f"s3://{storage.bucket}/outputs/inputs/none/a.png")


def test_upload_data_uri_stores_the_decoded_image_under_the_job(storage: Storage) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    ref = storage.upload_data_uri(uri, "job_d", 0)
    assert ref == f"s3://{storage.bucket}/{storage.prefix}inputs/job_d/data-0.png"
    fetched = httpx.get(StorageInputs(storage).as_url(ref))
    assert fetched.content == png and fetched.headers["content-type"] == "image/png"
    assert storage.upload_data_uri(uri, "job_d", 0) == ref  # a retried upload rewrites its own key
    with pytest.raises(InvalidRequest, match="data: URI of text/plain, not a known image type"):
        storage.upload_data_uri("data:text/plain,hello", "job_d", 1)
    with pytest.raises(InvalidRequest, match="does not decode"):
        storage.upload_data_uri("data:image/png;base64,@@@", "job_d", 1)
    with pytest.raises(InvalidRequest):
        storage.upload_data_uri(uri, "../escape", 0)
