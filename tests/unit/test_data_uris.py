"""data: URIs: decoded with their media type, and image ones uploaded by the producer like local files."""

from __future__ import annotations

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
