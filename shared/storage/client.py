"""The boto3 S3 client genqueue uses, and the one place botocore errors become shared.errors classes.

A refusal retrying cannot change (missing bucket, denied access, bad credentials) becomes StorageError; anything
else (connection errors, 5xx, SlowDown) becomes StorageUnavailable, which the caller may retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from shared.errors import StorageError, StorageUnavailable
from shared.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: seconds to open a connection to the endpoint, and to wait for an answer to one call (a part upload included)
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
#: connections kept per client: one Storage is shared by a worker's threads
MAX_POOL_CONNECTIONS = 32
#: error codes that retrying cannot change
PERMANENT_S3_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
        "AllAccessDisabled",
        "AccountProblem",
        "NoSuchKey",
    }
)


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ClientError ("NoSuchBucket", "404", ...)."""
    return str(exc.response.get("Error", {}).get("Code", "?"))


def make_s3_client(settings: Settings) -> S3Client:
    """A boto3 S3 client for `settings`: standard retries, checksums only where required, path-style on endpoints."""
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"mode": "standard", "max_attempts": 5},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
    )
    # a Session of its own: boto3's default session is not safe to create clients from in several threads
    return boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


@contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """Translate botocore/boto3 exceptions raised inside into StorageError or StorageUnavailable."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = f"storage refused {action}: {code}"
        if code in PERMANENT_S3_CODES:
            raise StorageError(message) from exc
        raise StorageUnavailable(message) from exc
    except (NoCredentialsError, ParamValidationError) as exc:
        raise StorageError(f"storage {action} impossible: {type(exc).__name__}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"storage {action} failed: {type(exc).__name__}") from exc
