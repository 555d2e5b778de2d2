"""The SSRF guard: URL checks, the pinning transport, the webhook client and the producer's checks; no network."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fakeredis
import httpx
import pytest

from producer.api import Producer
from producer.validate import build_request, validate
from shared import netguard
from shared.errors import InvalidRequest
from shared.netguard import BlockedAddress, GuardedTransport, check_url, guarded_client
from shared.settings import Settings
from shared.store import JobStore
from shared.webhooks import deliver
from shared.webhooks.signing import generate_secret
from workers import context

PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
REAL_GETADDRINFO = socket.getaddrinfo


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Make socket.getaddrinfo answer `answers[host]`: one list of addresses per call, the last one repeated.

    Numeric hosts (what a pinned connection asks for) still go to the real getaddrinfo, which needs no network.
    """
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        try:
            return REAL_GETADDRINFO(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        calls = answers[host]
        addresses = calls[min(asked.count(host), len(calls)) - 1]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})


def refused(url: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidRequest) as info:
        check_url(url, allow_private=False, **kwargs)
    message = info.value.message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://100.64.0.1/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::1]/", "loopback"),
        ("http://[fc00::1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::ffff:127.0.0.1]/", "loopback address (IPv4-mapped 127.0.0.1)"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address (IPv4-mapped 169.254.169.254)"),
        ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped 169.254.169.254"),
        ("http://[2002:a9fe:a9fe::]/", "6to4 169.254.169.254"),
        ("http://[64:ff9b::7f00:1]/", "NAT64 127.0.0.1"),
        ("http://2130706433/", "is 127.0.0.1, a loopback"),
        ("http://0177.0.0.1/", "is 127.0.0.1, a loopback"),
        ("http://0x7f.0.0.1/", "is 127.0.0.1, a loopback"),
        ("http://0x7f000001/", "is 127.0.0.1, a loopback"),
        ("http://127.1/", "is 127.0.0.1, a loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://010.1/", "is 10.0.0.1, a private"),  # octal to inet_aton, decimal 10.1 to others: either refuses
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata name"),
        ("http://METADATA/", "cloud metadata name"),
        ("http://localhost:8000/", "loopback name"),
    ],
)
def test_non_public_addresses_are_refused(url: str, reason: str) -> None:
    message = refused(url, what="webhook URL")
    assert message.startswith("webhook URL host ")
    assert reason in message
    hint = netguard.METADATA_HINT if "metadata" in message else netguard.ALLOW_HINT
    assert message.endswith(f"refused ({hint})")


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"evil.test": [["127.0.0.1"]]})
    assert refused("https://evil.test/hook", what="webhook URL") == (
        "webhook URL host 'evil.test' resolves to 127.0.0.1, a loopback address; "
        "refused (name its host:port in GENQUEUE_PRIVATE_URL_ALLOWLIST, or set GENQUEUE_ALLOW_PRIVATE_URLS=true for"
        " development)"
    )


def test_any_private_answer_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"mixed.test": [[PUBLIC, "10.0.0.7"]]})
    assert "resolves to 10.0.0.7, a private address" in refused("https://mixed.test/")


def test_an_unresolvable_host_is_refused() -> None:
    assert refused("https://nowhere.test/", what="image input") == "image input host 'nowhere.test' does not resolve"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("ftp://files.test/x", "must be http or https, not 'ftp'"),
        ("file:///etc/passwd", "must be http or https, not 'file'"),
        ("gopher://files.test/x", "must be http or https"),
        ("//files.test/x", "must be http or https"),
        ("http:///x", "has no host"),
        ("https://user:secret@files.test/x", "must not carry credentials"),
        ("http://evil.test\\@127.0.0.1/", "must not carry credentials"),
        ("http://[::1/", "is not a valid URL"),
        ("http://[zz]/", "is not a valid URL"),
        ("http://999.1.1.1/", "is not a valid URL"),
    ],
)
def test_scheme_host_and_credentials_rules(url: str, text: str) -> None:
    assert text in refused(url)
    with pytest.raises(InvalidRequest):  # these hold even when private addresses are allowed
        check_url(url, allow_private=True)


def test_a_public_address_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.test": [[PUBLIC_V6, PUBLIC, PUBLIC]]})
    checked = check_url("https://hooks.example.test:8443/in?token=x", allow_private=False)
    assert (checked.scheme, checked.host, checked.port) == ("https", "hooks.example.test", 8443)
    assert [str(a) for a in checked.addresses] == [PUBLIC_V6, PUBLIC]
    assert [str(a) for a in check_url(f"http://{PUBLIC}/", allow_private=False).addresses] == [PUBLIC]


def test_allow_private_accepts_loopback_without_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {})
    checked = check_url("http://localhost:9000/hook", allow_private=True)
    assert (checked.host, checked.port, checked.addresses) == ("localhost", 9000, ())
    assert check_url("http://127.0.0.1/", allow_private=True).addresses == ()
    assert asked == []


class Recorder:
    """An inner transport that records what it was asked to send, and answers with `respond`."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.sent: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200))
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.respond(request)


def test_dns_rebinding_cannot_move_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    inner = Recorder()
    with guarded_client(False, timeout=5, inner=inner.transport) as client:
        response = client.post("https://rebind.test/hooks?token=abc", content=b"{}")
        assert response.status_code == 200
        assert str(response.request.url) == "https://rebind.test/hooks?token=abc"
        (sent,) = inner.sent
        assert str(sent.url) == f"https://{PUBLIC}/hooks?token=abc"
        assert sent.headers["host"] == "rebind.test"
        assert sent.extensions["sni_hostname"] == "rebind.test"
        assert sent.content == b"{}"
        assert asked == ["rebind.test"]  # resolved once: the checked answer is the one connected to

        with pytest.raises(BlockedAddress, match=r"blocked: host 'rebind.test' resolves to 127.0.0.1, a loopback"):
            client.get("https://rebind.test/again")
    assert len(inner.sent) == 1


def test_plain_http_keeps_host_and_port_without_sni(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.test": [[PUBLIC_V6]]})
    inner = Recorder()
    with guarded_client(False, timeout=5, inner=inner.transport) as client:
        client.get("http://hooks.test:8080/x")
    (sent,) = inner.sent
    assert str(sent.url) == f"http://[{PUBLIC_V6}]:8080/x"
    assert sent.headers["host"] == "hooks.test:8080"
    assert "sni_hostname" not in sent.extensions


def test_next_checked_address_is_tried_when_one_does_not_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"dual.test": [[PUBLIC_V6, PUBLIC]]})

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_V6:
            raise httpx.ConnectError("network unreachable", request=request)
        return httpx.Response(204)

    inner = Recorder(respond)
    with guarded_client(False, timeout=5, inner=inner.transport) as client:
        assert client.get("https://dual.test/").status_code == 204
    assert [sent.url.host for sent in inner.sent] == [PUBLIC_V6, PUBLIC]


def test_redirects_to_private_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.test": [[PUBLIC]]})
    inner = Recorder(lambda request: httpx.Response(302, headers={"location": "http://169.254.169.254/latest/"}))
    with guarded_client(False, timeout=5, inner=inner.transport) as client:
        assert client.get("https://hooks.test/").status_code == 302
    assert len(inner.sent) == 1

    with (
        guarded_client(False, timeout=5, follow_redirects=True, inner=inner.transport) as client,
        pytest.raises(BlockedAddress, match=r"169\.254\.169\.254' is a cloud metadata address"),
    ):
        client.get("https://hooks.test/")
    assert len(inner.sent) == 2  # the first hop of each client; the redirect target was never sent to


def test_unresolvable_host_is_a_plain_connect_error() -> None:
    with (
        guarded_client(False, timeout=5, inner=Recorder().transport) as client,
        pytest.raises(httpx.ConnectError) as info,
    ):
        client.get("https://gone.test/")
    assert not isinstance(info.value, BlockedAddress)
    assert "does not resolve" in str(info.value)


def test_each_host_gets_its_own_pool() -> None:
    transport = GuardedTransport(False)
    try:
        first = transport._transport_for("a.test")
        assert transport._transport_for("a.test") is first
        assert transport._transport_for("b.test") is not first
        for n in range(netguard.MAX_POOLS):
            transport._transport_for(f"h{n}.test")
        assert "a.test" not in transport._pools and len(transport._pools) == netguard.MAX_POOLS
    finally:
        transport.close()


def test_a_blocked_webhook_is_a_failed_delivery() -> None:
    with guarded_client(False, timeout=5, inner=Recorder().transport) as client:
        result = deliver(client, "http://127.0.0.1:9/hook?token=SECRET", {}, b"{}", timeout=5)
    assert not result.delivered and result.status_code is None
    assert result.error is not None and "blocked" in result.error and "SECRET" not in result.error


@pytest.mark.parametrize("allow", [False, True])
def test_webhook_client_is_guarded(monkeypatch: pytest.MonkeyPatch, allow: bool) -> None:
    monkeypatch.setattr(context, "_local", threading.local())
    monkeypatch.setattr(context, "settings", lambda: Settings(allow_private_urls=allow, webhook_timeout_seconds=7))
    client = context.webhook_http()
    try:
        assert isinstance(client._transport, GuardedTransport) and client._transport.allow_private is allow
        assert client.timeout.read == 7 and client.follow_redirects is False
        assert context.webhook_http() is client
    finally:
        client.close()


@pytest.fixture
def local_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1; yields its port and the Host headers it was sent."""
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers["host"])
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield str(server.server_address[1]), hosts
    server.shutdown()
    server.server_close()


def test_real_local_server_reached_only_when_private_urls_are_allowed(local_server: tuple[str, list[str]]) -> None:
    port, hosts = local_server
    with guarded_client(True, timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{port}/").text == "ok"
    with (
        guarded_client(False, timeout=5) as client,
        pytest.raises(BlockedAddress, match=r"'127\.0\.0\.1' is a loopback address"),
    ):
        client.get(f"http://127.0.0.1:{port}/")
    assert hosts == [f"127.0.0.1:{port}"]


def test_real_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, local_server: tuple[str, list[str]]
) -> None:
    """Through the real HTTPTransport: a name checked once, then connected to by its address, Host kept."""
    port, hosts = local_server
    asked = fake_dns(monkeypatch, {"hooks.test": [["127.0.0.1"], ["10.9.9.9"]]})
    monkeypatch.setattr(netguard, "refusal", lambda address: None)  # pretend 127.0.0.1 is public
    with guarded_client(False, timeout=5) as client:
        assert client.get(f"http://hooks.test:{port}/").text == "ok"
    assert hosts == [f"hooks.test:{port}"]
    assert asked == ["hooks.test"]


def test_producer_refuses_private_webhook_and_input_urls() -> None:
    redis = fakeredis.FakeRedis()
    settings = Settings(allow_private_urls=False, webhook_secret=generate_secret())
    producer = Producer(settings, store=JobStore(redis), celery=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        producer.submit("sandbox", "sandbox-image", "a cat", webhook_url="http://169.254.169.254/hook")
    assert info.value.message.startswith("webhook URL host '169.254.169.254' is a cloud metadata address; refused")
    with pytest.raises(InvalidRequest) as info:
        producer.submit("sandbox", "sandbox-image", "a cat", images=["http://10.0.0.5/cat.png"])
    assert info.value.message.startswith("image input host '10.0.0.5' is a private address; refused")
    with pytest.raises(InvalidRequest, match="webhook URL must be http or https, not 'ftp'"):
        producer.submit("sandbox", "sandbox-image", "a cat", webhook_url="ftp://hooks.test/")
    assert redis.keys() == []


@pytest.mark.parametrize(
    ("option", "value", "what"),
    [
        ("reference_image_urls", ["http://192.168.0.2/ref.png"], "reference image input"),
        ("reference_video_urls", ["https://[::1]/clip.mp4"], "reference video input"),
        ("reference_audio_urls", ["https://0x7f000001/a.mp3"], "reference audio input"),
        ("video_url", "https://metadata.google.internal/v.mp4", "video input"),
    ],
)
def test_validate_checks_every_input_url(option: str, value: Any, what: str) -> None:
    request = build_request("sandbox-video", "a cat", {option: value}, [])
    with pytest.raises(InvalidRequest, match=f"^{what} host "):
        validate(Settings(allow_private_urls=False), "sandbox", request)
    validate(Settings(allow_private_urls=True), "sandbox", request)


def test_validate_leaves_data_and_s3_refs_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"cdn.test": [[PUBLIC]]})
    images = ["data:image/png;base64,AA==", "s3://bucket/in.png", "https://cdn.test/a.png"]
    request = build_request("sandbox-image", "a cat", {}, images)
    validate(
        Settings(allow_private_urls=False, webhook_secret=generate_secret()),
        "sandbox",
        request,
        "https://cdn.test/hook",
    )
    assert asked == ["cdn.test", "cdn.test"]
