"""Content types and file extensions of outputs and inputs: one table, read both ways."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes, urlsplit

DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_EXTENSION = "bin"

#: the extension each content type is stored under, and the content type an extension stands for
EXTENSIONS: dict[str, str] = {
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/bmp": "bmp",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/mp4": "m4a",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "application/json": "json",
    "text/plain": "txt",
}
CONTENT_TYPES: dict[str, str] = {ext: content_type for content_type, ext in EXTENSIONS.items()}
#: other spellings met in the wild
TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
}
EXTENSION_ALIASES = {"jpeg": "jpg", "mpeg4": "mp4", "m4v": "mp4", "heif": "heic", "wave": "wav"}
#: content types that say nothing: the URL's extension is a better guess
GENERIC_TYPES = frozenset({"", DEFAULT_CONTENT_TYPE, "binary/octet-stream", "application/binary"})


def normalize_content_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower-cased, without parameters, aliases resolved ("" for none)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return TYPE_ALIASES.get(media_type, media_type)


def url_extension(url: str) -> str | None:
    """The known extension the URL's path ends in (query and fragment ignored), or None."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    ext = name.rsplit(".", 1)[-1].lower()
    ext = EXTENSION_ALIASES.get(ext, ext)
    return ext if ext in CONTENT_TYPES else None


def content_type_for(header: str | None, url: str) -> str:
    """The content type to store an output under: a known media type (EXTENSIONS), else octet-stream.

    The header's type when known; when generic (none, octet-stream), the type the URL's extension stands for;
    any other type as octet-stream. What a vendor calls text/html or image/svg+xml is never stored as such: the
    bucket's presigned links would serve it to browsers as a page of the bucket's origin, script and all.
    """
    media_type = normalize_content_type(header)
    if media_type in EXTENSIONS:
        return media_type
    if media_type not in GENERIC_TYPES:
        return DEFAULT_CONTENT_TYPE
    ext = url_extension(url)
    return CONTENT_TYPES[ext] if ext else DEFAULT_CONTENT_TYPE


def extension_for(content_type: str, url: str) -> str:
    """The extension for an output key: from the content type, else the URL's extension, else "bin"."""
    ext = EXTENSIONS.get(normalize_content_type(content_type))
    return ext or url_extension(url) or DEFAULT_EXTENSION


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """The media type (normalized, "" when none is given) and the bytes of a `data:` URI, base64 or percent-encoded.

    ValueError for a string that is not a data: URI or whose base64 payload does not decode.
    """
    if not uri[:5].lower() == "data:":
        raise ValueError("not a data: URI")
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise ValueError("a data: URI needs a comma before its payload")
    params = header.split(";")
    if params[-1].strip().lower() == "base64":
        try:
            return normalize_content_type(params[0]), base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a data: URI's base64 payload does not decode") from None
    return normalize_content_type(params[0]), unquote_to_bytes(payload)
