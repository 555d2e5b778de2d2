"""data: URIs: decoded with their media type, and image ones uploaded by the producer like local files."""

from __future__ import annotations

import base64

import pytest

from producer.validate import build_request, inline_image_inputs
from shared.storage.media import decode_data_uri


@pytest.mark.parametrize(
    ("uri", "media_type", "body"),
    [
        ("data:image/png;base64,aGk=", "image/png", b"hi"),
        ("DATA:Image/JPG;base64,aGk=", "image/jpeg", b"hi"),
        ("data:image/gif;name=a.gif;base64,aGk=", "image/gif", b"hi"),
        ("data:,a%20b", "", b"a b"),
    ],
)
def test_decode_data_uri(uri: str, media_type: str, body: bytes) -> None:
    assert decode_data_uri(uri) == (media_type, body)


@pytest.mark.parametrize("uri", ["https://a.example/x.png", "data:image/png;base64", "data:image/png;base64,@@"])
def test_decode_data_uri_refuses_what_is_not_one(uri: str) -> None:
    with pytest.raises(ValueError):
        decode_data_uri(uri)


def test_image_data_uris_are_the_inline_inputs_once_each() -> None:
    uri = "data:image/png;base64,aGk="
    request = build_request(
        "m", "p", {"reference_image_urls": [uri, "https://a.example/r.png"]}, [uri, "https://a.example/1.png"]
    )
    assert inline_image_inputs(request) == [uri]


def test_the_request_bound_leaves_out_image_data_uris_which_are_uploaded() -> None:
    """A 1 MiB image as a data: URI is accepted (it goes to the bucket, not the job record); 300 KiB that would stay
    in the record are not; an image past the 20 MiB inline budget is refused by that budget (test_limits.py)."""
    from shared.errors import InvalidRequest

    image = "data:image/png;base64," + base64.b64encode(bytes(1024 * 1024)).decode()
    request = build_request("m", "p", {}, [image])
    assert request.image_urls == [image]
    with pytest.raises(InvalidRequest, match=r"request is larger than 256 KiB \(inline images aside\)"):
        build_request("m", "p", {"extra": {"notes": "x" * 300 * 1024}}, [])
    with pytest.raises(InvalidRequest, match="larger than 256 KiB"):  # a data: URI where it is not uploaded
        build_request("m", "p", {"video_url": "data:video/mp4;base64," + "A" * 300 * 1024}, [])
