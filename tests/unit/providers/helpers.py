"""What the adapter tests share: a fake InputResolver, configs, answers, and sending through httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.models import GenerationRequest
from shared.providers.base import HttpAnswer, HttpRequest
from shared.providers.client import send
from shared.settings import ProviderConfig

SECRET = "sk-test-secret-9f8e7d"
UPLOADED = "s3://bucket/inputs/x.png"
PRESIGNED = "https://bucket.s3.example.com/inputs/x.png?X-Amz-Signature=abc123"
DATA_URI = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="

BASE_URLS = {
    "vicsee": "https://vicsee.com",
    "veogen": "https://veogen.studio",
    "gateway": "https://gateway.example.com",
    "veo3api": "https://veo3api.example.com",
    "sandbox": "http://127.0.0.1:8900/sandbox",
}


class FakeInputs:
    """An InputResolver that presigns or inlines the one uploaded file and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def as_url(self, ref: str) -> str:
        self.calls.append(("url", ref))
        return PRESIGNED if ref == UPLOADED else ref

    def as_data_uri(self, ref: str) -> str:
        self.calls.append(("data_uri", ref))
        return DATA_URI if ref == UPLOADED else ref


def config(dialect: str, api_key: str | None = SECRET, name: str | None = None) -> ProviderConfig:
    """A provider of `dialect` at its usual base URL."""
    return ProviderConfig(name=name or dialect, dialect=dialect, base_url=BASE_URLS[dialect], api_key=api_key)


def req(model: str, prompt: str = "A cat surfing in sunset, cinematic", /, **options: Any) -> GenerationRequest:
    """A unified request, validated as the producer would."""
    return GenerationRequest.model_validate({"model": model, "prompt": prompt, **options})


def answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> HttpAnswer:
    """An answer with `body` as JSON (or `raw` bytes as they are)."""
    data = raw if raw is not None else json.dumps(body).encode()
    return HttpAnswer(status_code=status, headers=headers or {}, body=data)


def send_mock(request: HttpRequest, reply: httpx.Response | None = None) -> tuple[httpx.Request, HttpAnswer]:
    """Send `request` with the workers' own `send` through a MockTransport: what went out and what came back."""
    seen: list[httpx.Request] = []

    def handle(outgoing: httpx.Request) -> httpx.Response:
        seen.append(outgoing)
        return reply if reply is not None else httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        got = send(client, request)
    return seen[0], got


def sent_json(outgoing: httpx.Request) -> Any:
    """The JSON body of a sent request."""
    return json.loads(outgoing.content)
