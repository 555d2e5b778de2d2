"""The pure parts of shared/storage: regrouping a stream into parts, download error mapping and bounds, types."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.errors import DownloadFailed, DownloadUnavailable
from shared.http_deadline import Deadline
from shared.netguard import BlockedAddress
from shared.storage import content_type_for, extension_for
from shared.storage.streaming import (
    MAX_REDIRECTS,
    CopyBounds,
    bounded,
    check_length,
    check_status,
    download_errors,
    iter_parts,
    url_host,
)


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
    ("status", "error"), [(400, DownloadFailed), (302, DownloadFailed), (502, DownloadUnavailable)]
)
def test_other_statuses(status: int, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"cdn\.example"):
        check_status(response(status), "cdn.example")
    check_status(response(200), "cdn.example")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ReadTimeout("t"), DownloadUnavailable),
        (httpx.ConnectError("c"), DownloadUnavailable),
        (httpx.RemoteProtocolError("r"), DownloadUnavailable),
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


@pytest.mark.parametrize(
    ("header", "url", "stored"),
    [
        ("text/html", "https://x/y.mp4", "application/octet-stream"),  # never relabelled, never served as a page
        ("image/svg+xml", "https://x/y.svg", "application/octet-stream"),
        ("application/javascript", "https://x/y", "application/octet-stream"),
        ("video/x-matroska", "https://x/y.mkv", "application/octet-stream"),
        ("text/html; charset=utf-8", "https://x/y.html", "application/octet-stream"),
        ("", "https://x/page.html", "application/octet-stream"),
        ("image/PNG", "https://x/y", "image/png"),
    ],
)
def test_only_known_media_types_are_stored_as_such(header: str, url: str, stored: str) -> None:
    assert content_type_for(header, url) == stored


BOUNDS = CopyBounds(max_bytes=10, max_seconds=60)


def announcing(length: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-length": length}, request=httpx.Request("GET", "https://cdn.example/"))


def test_a_content_length_over_the_bound_is_refused_before_reading() -> None:
    check_length(announcing("10"), "cdn.example", BOUNDS)
    check_length(httpx.Response(200, request=httpx.Request("GET", "https://cdn.example/")), "cdn.example", BOUNDS)
    with pytest.raises(
        DownloadFailed, match=r"announces 11 bytes, over the 10-byte bound \(GENQUEUE_MAX_OUTPUT_BYTES\)"
    ):
        check_length(announcing("11"), "cdn.example", BOUNDS)


def test_the_stream_is_cut_past_the_byte_bound() -> None:
    read: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            read.append(4)
            yield b"abcd"

    with Deadline(60) as deadline:
        stream = bounded(endless(), "cdn.example", BOUNDS, deadline)
        assert b"".join([next(stream), next(stream)]) == b"abcdabcd"
        with pytest.raises(DownloadFailed, match=r"larger than the 10-byte bound .*stopped after 12 bytes"):
            next(stream)
    assert sum(read) == 12


def test_the_stream_is_cut_past_the_deadline() -> None:
    with Deadline(0) as deadline:
        with pytest.raises(DownloadFailed, match=r"took longer than the 60s bound \(GENQUEUE_MAX_COPY_SECONDS\)"):
            list(bounded([b"a"], "cdn.example", BOUNDS, deadline))
        with (
            pytest.raises(DownloadFailed, match="GENQUEUE_MAX_COPY_SECONDS"),
            download_errors("cdn.example", BOUNDS, deadline),
        ):
            raise httpx.ReadTimeout("deadline")


def test_a_refused_address_and_too_many_redirects_are_permanent_and_named() -> None:
    blocked = BlockedAddress("blocked: host '127.0.0.1' is a loopback address")
    guard_refusal = r"cdn\.example was refused by the address guard: blocked: host '127"
    with pytest.raises(DownloadFailed, match=guard_refusal), download_errors("cdn.example"):
        raise blocked
    with pytest.raises(DownloadFailed, match=f"redirected more than {MAX_REDIRECTS} times"), download_errors("x"):
        raise httpx.TooManyRedirects("m")
