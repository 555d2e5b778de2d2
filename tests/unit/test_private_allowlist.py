"""GENQUEUE_PRIVATE_URL_ALLOWLIST: trusted private host:port pairs, in check_url and in the guarded transport."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from producer.validate import build_request, validate
from shared import netguard
from shared.errors import InvalidRequest
from shared.netguard import BlockedAddress, check_url, guarded_client, parse_allowlist
from shared.settings import Settings
from shared.webhooks.signing import generate_secret
from tests.unit.test_netguard import Recorder, fake_dns


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})


def test_entries_are_normalized() -> None:
    entries = ["sandbox:8900", "SANDBOX.:8901", " 127.0.0.1:9000 ", "[::1]:9000", "[0:0::2]:9001"]
    assert parse_allowlist(entries) == {
        ("sandbox", 8900),
        ("sandbox", 8901),
        ("127.0.0.1", 9000),
        ("::1", 9000),
        ("::2", 9001),
    }
    assert parse_allowlist([]) == frozenset()


MALFORMED = ["sandbox", "sandbox:", ":8900", "sandbox:0", "sandbox:70000", "http://sandbox:8900", "user@sandbox:80"]
METADATA = ["169.254.169.254:80", "metadata.google.internal:80", "METADATA:80", "[::ffff:169.254.169.254]:80"]


@pytest.mark.parametrize("entry", [*MALFORMED, "a b:80", "[127.0.0.1]:80", "::1:80", "sandbox:8900/path", ""])
def test_malformed_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="private URL allowlist entry"):
        parse_allowlist([entry])


@pytest.mark.parametrize(
    "entry", [*METADATA, "[fd00:ec2::254]:80", "2852039166:80", "0xa9.0xfe.0xa9.0xfe:80", "100.100.100.200:80"]
)
def test_metadata_endpoints_can_never_be_listed(entry: str) -> None:
    with pytest.raises(ValueError, match="cloud metadata endpoint"):
        parse_allowlist([entry])


def test_settings_read_the_json_list_and_refuse_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENQUEUE_PRIVATE_URL_ALLOWLIST", '["sandbox:8900", "moto:5000"]')
    assert Settings().private_url_allowlist == ["sandbox:8900", "moto:5000"]
    assert Settings(private_url_allowlist=[]).private_url_allowlist == []
    monkeypatch.setenv("GENQUEUE_PRIVATE_URL_ALLOWLIST", '["169.254.169.254:80"]')
    with pytest.raises(ValidationError, match="cloud metadata endpoint"):
        Settings()


def test_check_url_lets_only_the_listed_host_and_port_through(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"sandbox": [["172.18.0.5"]], "localhost": [["127.0.0.1"]]})
    allow = ["sandbox:8900", "127.0.0.1:9000", "localhost:9001"]
    checked = check_url("http://sandbox:8900/out/1.mp4", False, allowlist=allow)
    assert [str(a) for a in checked.addresses] == ["172.18.0.5"]
    assert [str(a) for a in check_url("http://127.0.0.1:9000/", False, allowlist=allow).addresses] == ["127.0.0.1"]
    assert check_url("http://localhost:9001/", False, allowlist=allow).addresses
    for url in ("http://sandbox:8901/", "http://sandbox/", "http://127.0.0.1:9001/", "http://localhost:9000/"):
        with pytest.raises(InvalidRequest, match="refused"):
            check_url(url, False, allowlist=allow)
    with pytest.raises(InvalidRequest, match=r"is 127\.0\.0\.1, a loopback address"):  # another spelling: not listed
        check_url("http://2130706433:9000/", False, allowlist=allow)


def test_a_listed_name_that_resolves_to_a_metadata_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"sandbox": [["172.18.0.5", "169.254.169.254"]]})
    with pytest.raises(InvalidRequest) as info:
        check_url("http://sandbox:8900/", False, "webhook URL", ["sandbox:8900"])
    assert info.value.message == (
        "webhook URL host 'sandbox' resolves to 169.254.169.254, a cloud metadata address; "
        f"refused ({netguard.METADATA_HINT})"
    )


def test_the_transport_connects_to_a_listed_private_host_and_refuses_its_redirects_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"sandbox": [["172.18.0.5"]]})

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/out/0.mp4":
            return httpx.Response(200, content=b"video")
        return httpx.Response(302, headers={"location": request.url.params["to"]})

    inner = Recorder(respond)
    with guarded_client(False, 5, follow_redirects=True, allowlist=["sandbox:8900"], inner=inner.transport) as client:
        assert client.get("http://sandbox:8900/out/0.mp4").content == b"video"
        assert [str(sent.url) for sent in inner.sent] == ["http://172.18.0.5:8900/out/0.mp4"]
        assert inner.sent[0].headers["host"] == "sandbox:8900"
        for target, refusal in [
            ("http://127.0.0.1:8901/canary", r"'127\.0\.0\.1' is a loopback address"),
            ("http://sandbox:8901/canary", r"'sandbox' resolves to 172\.18\.0\.5, a private address"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ]:
            inner.sent.clear()
            with pytest.raises(BlockedAddress, match=refusal):
                client.get("http://sandbox:8900/out/r", params={"to": target})
            assert len(inner.sent) == 1  # the redirect itself; its target was never sent to


def test_the_producer_accepts_listed_private_webhooks_and_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.internal": [["10.0.0.8"]], "cdn.internal": [["10.0.0.9"]]})
    settings = Settings(
        allow_private_urls=False,
        webhook_secret=generate_secret(),
        private_url_allowlist=["hooks.internal:8443", "cdn.internal:443"],
    )
    request = build_request("sandbox-image", "a cat", {}, ["https://cdn.internal/cat.png"])
    validate(settings, "sandbox", request, "https://hooks.internal:8443/in")
    with pytest.raises(InvalidRequest, match=r"^webhook URL host 'hooks\.internal' resolves to 10\.0\.0\.8"):
        validate(settings, "sandbox", request, "https://hooks.internal/in")
    other = build_request("sandbox-image", "a cat", {}, ["http://cdn.internal/cat.png"])  # port 80: not listed
    with pytest.raises(InvalidRequest, match=r"^image input host 'cdn\.internal' resolves to 10\.0\.0\.9"):
        validate(settings, "sandbox", other)
