"""data: URIs: decoded with their media type, and uploaded by the producer like local files, whatever the field."""

from __future__ import annotations

import base64

import pytest

from producer.validate import PreviewInputs, build_request, inline_inputs
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


def test_data_uris_are_the_inline_inputs_once_each_with_the_kind_of_their_field() -> None:
    uri = "data:image/png;base64,aGk="
    video = "data:video/mp4;base64,AAAA"
    audio = "data:audio/mpeg;base64,AAAA"
    request = build_request(
        "m",
        "p",
        {
            "reference_image_urls": [uri, "https://a.example/r.png"],
            "reference_video_urls": [video],
            "reference_audio_urls": [audio, "https://a.example/a.mp3"],
            "video_url": video,
        },
        [uri, "https://a.example/1.png"],
    )
    assert inline_inputs(request) == {uri: "image", video: "video", audio: "audio"}


def test_the_request_bound_leaves_out_data_uris_which_are_uploaded() -> None:
    """A 1 MiB image or video as a data: URI is accepted (it goes to the bucket, not the job record); 300 KiB that
    would stay in the record are not; an input past the 20 MiB inline budget is refused by that budget
    (test_limits.py)."""
    from shared.errors import InvalidRequest

    image = "data:image/png;base64," + base64.b64encode(bytes(1024 * 1024)).decode()
    request = build_request("m", "p", {}, [image])
    assert request.image_urls == [image]
    video = "data:video/mp4;base64," + "A" * 1024 * 1024
    assert build_request("m", "p", {"video_url": video}, []).video_url == video
    with pytest.raises(InvalidRequest, match=r"request is larger than 256 KiB \(inline inputs aside\)"):
        build_request("m", "p", {"extra": {"notes": "x" * 300 * 1024}}, [])


@pytest.mark.parametrize(
    ("scheme", "ref", "expected"),
    [
        ("https", "data:video/mp4;base64,AAAA", "https://uploaded-input.invalid/input"),
        ("http", "./clip.png", "http://uploaded-input.invalid/input"),
        ("http", "https://a.example/v.mp4", "https://a.example/v.mp4"),
    ],
)
def test_validation_resolves_an_input_to_be_uploaded_to_the_scheme_of_its_presigned_url(
    scheme: str, ref: str, expected: str
) -> None:
    assert PreviewInputs(scheme).as_url(ref) == expected
    assert PreviewInputs(scheme).as_data_uri(ref) == ref
