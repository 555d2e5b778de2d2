"""Storage: the bucket outputs are streamed into and inputs are uploaded to, over one boto3 S3 client.

Every S3 call runs inside `s3_errors` (client.py) and every download inside `download_errors` (streaming.py), so
only shared.errors classes leave this module.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import InvalidRequest, StorageError
from shared.http_deadline import Deadline
from shared.models import Output
from shared.settings import Settings
from shared.storage.client import error_code, make_s3_client, s3_errors
from shared.storage.media import (
    CONTENT_TYPES,
    DEFAULT_CONTENT_TYPE,
    EXTENSIONS,
    content_type_for,
    decode_data_uri,
    normalize_content_type,
    url_extension,
)
from shared.storage.streaming import (
    CopyBounds,
    bounded,
    check_length,
    check_status,
    download_errors,
    iter_parts,
    url_host,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef, CreateBucketConfigurationTypeDef

log = logging.getLogger(__name__)

#: uploaded input files larger than this are refused
MAX_INPUT_BYTES = 20 * 1024 * 1024
#: S3's limits: parts per multipart upload, and the largest object CopyObject takes in one call
MAX_PARTS = 10_000
MAX_COPY_OBJECT_BYTES = 5 * 1024**3
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Storage:
    """The output bucket of `settings`. Thread-safe: boto3 clients are, and nothing else is kept per call.

    `client` may be given (tests); otherwise one is made from the settings.
    """

    def __init__(self, settings: Settings, client: S3Client | None = None) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.part_bytes = settings.upload_part_bytes
        #: objects above this get their metadata by a multipart self-copy (CopyObject's own limit is 5 GiB)
        self.max_copy_object_bytes = MAX_COPY_OBJECT_BYTES
        self.client = client if client is not None else make_s3_client(settings)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists already (ours, or created meanwhile by another process)."""
        with s3_errors(f"creating bucket {self.bucket}"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            region = self.client.meta.region_name
            try:
                if region in (None, "us-east-1"):
                    self.client.create_bucket(Bucket=self.bucket)
                else:
                    location: CreateBucketConfigurationTypeDef = {"LocationConstraint": region}  # type: ignore[typeddict-item]
                    self.client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration=location)
            except ClientError as exc:
                if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def output_key(self, job_id: str, index: int, ext: str) -> str:
        """Where output `index` of job `job_id` is stored: `{prefix}{job_id}/{index}.{ext}`."""
        return f"{self.prefix}{job_id}/{index}.{ext}"

    def copy_from_url(self, http: httpx.Client, url: str, key: str | Callable[[str], str]) -> Output:
        """Stream `url` into the bucket at `key`, holding about one part in memory, and describe the result.

        `key` may be a function of the content type, called once the answer's headers are in (so the extension
        can follow what the vendor really sent); only known media types are stored as such (media.py). Bodies up
        to one part go up in one PutObject (with its Content-MD5, which the store checks), larger ones in a
        multipart upload that is aborted on any failure, whose stored size and sha256 (x-amz-meta-sha256) are
        then checked against what was streamed.

        Bounded (settings): a Content-Length over max_output_bytes is refused before the body is read, and the
        body is cut once it passes it; the whole copy, upload included, is cut at max_copy_seconds (every read
        keeps to that deadline when `http` sends through shared/netguard.py's transports). Per-read timeouts,
        redirects and the address guard are `http`'s own (a worker's download client: workers/context.py).
        Raises DownloadFailed (a bound crossed, a refused address, a dead link), DownloadUnavailable,
        StorageError or StorageUnavailable; nothing else escapes httpx or botocore.
        """
        host = url_host(url)
        bounds = CopyBounds(self.settings.max_output_bytes, self.settings.max_copy_seconds)
        deadline = Deadline(bounds.max_seconds)
        with deadline, download_errors(host, bounds, deadline), http.stream("GET", url) as response:
            check_status(response, host)
            check_length(response, host, bounds)
            content_type = content_type_for(response.headers.get("content-type"), url)
            key = key(content_type) if callable(key) else key
            chunks = bounded(response.iter_bytes(), host, bounds, deadline)
            size, sha256 = self._upload_stream(chunks, key, content_type)
        return Output(
            bucket=self.bucket,
            key=key,
            size=size,
            sha256=sha256,
            content_type=content_type,
            url=self.presign(key),
        )

    def _upload_stream(self, chunks: Iterator[bytes], key: str, content_type: str) -> tuple[int, str]:
        """Upload `chunks` to `key`; returns (size, sha256 hex) once the store has checked what it was sent (one
        PutObject: its Content-MD5) or the stored object was checked (a multipart upload, whose sha256 metadata is
        set after it completes)."""
        hasher = hashlib.sha256()
        size = 0
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            for part, last in iter_parts(chunks, self.part_bytes):
                hasher.update(part)
                size += len(part)
                if last and upload_id is None:
                    self._put(key, part, content_type, hasher.hexdigest())
                    return size, hasher.hexdigest()
                if upload_id is None:
                    upload_id = self._start_multipart(key, content_type)
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, part))
            if upload_id is not None:
                with s3_errors(f"completing s3://{self.bucket}/{key}"):
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                    )
                upload_id = None
                self._set_sha256(key, content_type, size, hasher.hexdigest())
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise
        self._verify(key, size, hasher.hexdigest())
        return size, hasher.hexdigest()

    def _put(self, key: str, body: bytearray, content_type: str, sha256: str) -> None:
        """One PutObject with the body's Content-MD5, which every S3-compatible store checks before it stores
        anything (BadDigest otherwise): nothing is read back."""
        digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        with s3_errors(f"writing s3://{self.bucket}/{key}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,  # type: ignore[arg-type]  # botocore takes a bytearray; the stubs say bytes
                ContentType=content_type,
                ContentMD5=digest,
                Metadata={"sha256": sha256},
            )

    def _start_multipart(self, key: str, content_type: str) -> str:
        with s3_errors(f"writing s3://{self.bucket}/{key}"):
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)
        return created["UploadId"]

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytearray) -> CompletedPartTypeDef:
        if number > MAX_PARTS:
            raise StorageError(f"output is larger than {MAX_PARTS} parts of {self.part_bytes} bytes")
        with s3_errors(f"writing s3://{self.bucket}/{key}"):
            answer = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,  # type: ignore[arg-type]
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            # the original failure is the one to report; an unfinished upload only costs storage
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)

    def _set_sha256(self, key: str, content_type: str, size: int, sha256: str) -> None:
        """Give a multipart object its sha256 metadata (only known at the end) by copying it onto itself."""
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": key}
        metadata = {"sha256": sha256}
        with s3_errors(f"setting metadata of s3://{self.bucket}/{key}"):
            if size <= self.max_copy_object_bytes:
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource=source,
                    MetadataDirective="REPLACE",
                    ContentType=content_type,
                    Metadata=metadata,
                )
                return
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=metadata
            )
            upload_id = created["UploadId"]
            try:
                parts: list[CompletedPartTypeDef] = []
                step = self.max_copy_object_bytes
                for number, start in enumerate(range(0, size, step), start=1):
                    answer = self.client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceRange=f"bytes={start}-{min(start + step, size) - 1}",
                    )
                    parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                self._abort(key, upload_id)
                raise

    def _verify(self, key: str, size: int, sha256: str) -> None:
        """StorageError unless the stored object has the streamed size and sha256."""
        with s3_errors(f"checking s3://{self.bucket}/{key}"):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        stored_size = int(head.get("ContentLength", -1))
        stored_sha = head.get("Metadata", {}).get("sha256")
        if stored_size != size or stored_sha != sha256:
            self._delete_quietly(key)
            raise StorageError(
                f"stored {key} does not match the download: {stored_size} bytes, sha256 {stored_sha}; "
                f"streamed {size} bytes, sha256 {sha256}"
            )

    def _delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not delete mismatched %s: %s", key, exc)

    def presign(self, key: str, bucket: str | None = None) -> str:
        """A GET URL for `key`, valid download_url_expiry_seconds."""
        with s3_errors(f"presigning {key}"):
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket or self.bucket, "Key": key},
                ExpiresIn=self.settings.download_url_expiry_seconds,
            )
        return str(url)

    def upload_input(self, path: Path, job_or_upload_id: str) -> str:
        """Upload the local image at `path` to `{prefix}inputs/{id}/{name}`; returns its `s3://bucket/key` reference.

        InvalidRequest for a missing file, a file over MAX_INPUT_BYTES, a name that is not a known image type, or
        an unsafe id.
        """
        if not _SAFE_ID.match(job_or_upload_id) or ".." in job_or_upload_id:
            raise InvalidRequest(f"unusable upload id {job_or_upload_id!r}")
        if not path.is_file():
            raise InvalidRequest(f"input image {path} is not a readable file")
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InvalidRequest(f"input image {path.name} is {size} bytes; the limit is {MAX_INPUT_BYTES}")
        ext = url_extension(path.name)
        content_type = CONTENT_TYPES[ext] if ext else DEFAULT_CONTENT_TYPE
        if not content_type.startswith("image/"):
            raise InvalidRequest(f"input {path.name} is not a known image type (png, jpg, webp, gif, ...)")
        key = f"{self.prefix}inputs/{job_or_upload_id}/{path.name}"
        with s3_errors(f"uploading s3://{self.bucket}/{key}"), path.open("rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return f"s3://{self.bucket}/{key}"

    def upload_data_uri(self, uri: str, job_or_upload_id: str, index: int, kind: str = "image") -> str:
        """Upload the `kind` (image, video or audio) in data: URI `uri` to `{prefix}inputs/{id}/data-{index}.{ext}`.

        Returns its `s3://` reference. The content type is the URI's own. InvalidRequest for a malformed URI, one
        over MAX_INPUT_BYTES, one whose type is not a known type of `kind`, or an unsafe id. The same (id, index)
        always names the same key, so an upload repeated by a retried submit replaces its own object.
        """
        if not _SAFE_ID.match(job_or_upload_id) or ".." in job_or_upload_id:
            raise InvalidRequest(f"unusable upload id {job_or_upload_id!r}")
        try:
            content_type, body = decode_data_uri(uri)
        except ValueError as exc:
            raise InvalidRequest(f"{kind} input {index}: {exc}") from None
        if len(body) > MAX_INPUT_BYTES:
            raise InvalidRequest(f"{kind} input {index} is {len(body)} bytes; the limit is {MAX_INPUT_BYTES}")
        ext = EXTENSIONS.get(content_type)
        if ext is None or not content_type.startswith(f"{kind}/"):
            shown = content_type or "no type"
            known = ", ".join(e for t, e in EXTENSIONS.items() if t.startswith(f"{kind}/"))
            raise InvalidRequest(f"{kind} input {index} is a data: URI of {shown}, not a known {kind} type ({known})")
        key = f"{self.prefix}inputs/{job_or_upload_id}/data-{index}.{ext}"
        with s3_errors(f"uploading s3://{self.bucket}/{key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return f"s3://{self.bucket}/{key}"

    def parse_ref(self, ref: str) -> str:
        """The key of an input reference; InvalidRequest unless it is `s3://{our bucket}/{prefix}inputs/...`."""
        head = f"s3://{self.bucket}/"
        key = ref[len(head) :] if ref.startswith(head) else ""
        if not key.startswith(f"{self.prefix}inputs/") or ".." in key.split("/"):
            # never presign what the caller names: only the inputs we uploaded ourselves
            raise InvalidRequest(f"not an uploaded input of this service: {ref[:120]!r}")
        return key

    def presign_ref(self, ref: str) -> str:
        """A presigned GET URL for an input reference from `upload_input`."""
        return self.presign(self.parse_ref(ref))

    def data_uri_for_ref(self, ref: str) -> str:
        """The input behind `ref` as a base64 `data:` URI with its content type."""
        key = self.parse_ref(ref)
        with s3_errors(f"reading s3://{self.bucket}/{key}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            body = answer["Body"].read(MAX_INPUT_BYTES + 1)
            answer["Body"].close()
        if len(body) > MAX_INPUT_BYTES:
            raise InvalidRequest(f"input {key} is over {MAX_INPUT_BYTES} bytes")
        content_type = normalize_content_type(answer.get("ContentType")) or DEFAULT_CONTENT_TYPE
        return f"data:{content_type};base64,{base64.b64encode(body).decode('ascii')}"
