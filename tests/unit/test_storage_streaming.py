"""The pure parts of shared/storage: regrouping a stream into parts, download error mapping, extensions."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import DownloadFailed, TransientDownloadError
from shared.storage import content_type_for, extension_for
from shared.storage.streaming import check_status, download_errors, iter_parts, url_host


def regroup(chunks: list[bytes], part_bytes: int) -> list[tuple[bytes, bool]]:
    return [(bytes(part), last) for part, last in iter_parts(chunks, part_bytes)]


def test_parts_are_exact_and_last_is_known() -> None:
    assert regroup([b"abc", b"defg", b"h"], 3) == [(b"abc", False), (b"def", False), (b"gh", True)]
    assert regroup([b"abcdef"], 3) == [(b"abc", False), (b"def", True)]  # a full last part is still last
    assert regroup([b"ab", b"", b"c"], 3) == [(b"abc", True)]
    assert regroup([], 3) == [(b"", True)]
    with pytest.raises(ValueError):
        regroup([b"a"], 0)


def test_part_buffer_is_reused() -> None:
    parts = iter_parts([b"abcdef"], 3)
    first, _ = next(parts)
    next(parts)
    assert first == b"def"  # the same buffer: a part is only valid until the next one is asked for


def response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://cdn.example/x.mp4?sig=S"))


@pytest.mark.parametrize("status", [403, 404, 410])
def test_dead_links(status: int) -> None:
    with pytest.raises(DownloadFailed, match=rf"output link at cdn\.example answered HTTP {status} "):
        check_status(response(status), "cdn.example")


@pytest.mark.parametrize(
    ("status", "error"), [(400, DownloadFailed), (302, DownloadFailed), (502, TransientDownloadError)]
)
def test_other_statuses(status: int, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"cdn\.example"):
        check_status(response(status), "cdn.example")
    check_status(response(200), "cdn.example")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ReadTimeout("t"), TransientDownloadError),
        (httpx.ConnectError("c"), TransientDownloadError),
        (httpx.RemoteProtocolError("r"), TransientDownloadError),
        (httpx.UnsupportedProtocol("u"), DownloadFailed),
        (httpx.TooManyRedirects("m"), DownloadFailed),
    ],
)
def test_download_errors(exc: Exception, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"cdn\.example"), download_errors("cdn.example"):
        raise exc


def test_url_host_never_shows_the_query() -> None:
    assert url_host("https://cdn.example:8443/a/b.mp4?X-Amz-Signature=abc") == "cdn.example"
    assert url_host("not a url at all") == "?"


@pytest.mark.parametrize(
    ("content_type", "url", "ext"),
    [
        ("video/mp4", "https://x/y", "mp4"),
        ("image/png; charset=binary", "https://x/y.jpg", "png"),
        ("IMAGE/JPEG", "https://x/y", "jpg"),
        ("image/jpg", "https://x/y", "jpg"),
        ("image/webp", "https://x/y", "webp"),
        ("audio/mpeg", "https://x/y", "mp3"),
        ("audio/x-wav", "https://x/y", "wav"),
        ("application/octet-stream", "https://x/clip.MP4?sig=a.png", "mp4"),
        ("", "https://x/photo.jpeg", "jpg"),
        ("", "https://x/archive.tar", "bin"),
        ("application/x-unknown", "https://x/y", "bin"),
    ],
)
def test_extension_for(content_type: str, url: str, ext: str) -> None:
    assert extension_for(content_type, url) == ext


def test_content_type_for() -> None:
    assert content_type_for("video/mp4; codecs=avc1", "https://x/y.png") == "video/mp4"
    assert content_type_for(None, "https://x/y.webp") == "image/webp"
    assert content_type_for("binary/octet-stream", "https://x/y.mp4") == "video/mp4"
    assert content_type_for(None, "https://x/y") == "application/octet-stream"
