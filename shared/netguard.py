"""Server-side request forgery guard for URLs users and vendors give us (webhooks, input media, output downloads).

A URL passes when it is http or https, names a host, carries no credentials, and every address its host resolves
to is public: not loopback, private (RFC 1918, fc00::/7, 100.64.0.0/10), link-local (169.254.0.0/16, fe80::/10),
unspecified, multicast, reserved or a cloud metadata endpoint. IPv4 inside IPv6 (::ffff:, IPv4-compatible, 6to4,
NAT64) is judged by the IPv4 it carries; decimal, octal, hex and short IPv4 spellings are read as inet_aton reads
them, here rather than by the resolver, so the verdict never depends on it.

The private allowlist (GENQUEUE_PRIVATE_URL_ALLOWLIST) names `host:port` destinations that may be reached though
they are not public (the sandbox in docker-compose). It matches the URL's host as written (lower-cased, an IP
address in its canonical form) and its port, not what the host resolves to: naming another host or port that
leads to the same place does not match. Cloud metadata names and addresses stay refused even when allowlisted,
and cannot be listed: an allowlist entry is trusted, but no deployment needs its workers to fetch credentials.

`check_url` is the producer's up-front check. `GuardedTransport` is the one that counts for our own requests: it
resolves and checks each request's host (every redirect hop included) and connects to the checked address, so a
second DNS answer (rebinding) cannot differ from the one checked. With allow_private (GENQUEUE_ALLOW_PRIVATE_URLS)
nothing is resolved: `check_url` keeps only its scheme, host and credential rules, the transport passes through.
Every transport made here also keeps to the caller's overall deadline (shared/http_deadline.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.errors import InvalidRequest
from shared.http_deadline import deadline_transport

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
#: names of cloud metadata services, refused whatever they resolve to
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
#: AWS/GCP/Azure/Oracle, AWS ECS tasks, Alibaba, Azure's wire server, AWS over IPv6
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "168.63.129.16", "fd00:ec2::254")
)
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
ALLOW_HINT = (
    "name its host:port in GENQUEUE_PRIVATE_URL_ALLOWLIST, or set GENQUEUE_ALLOW_PRIVATE_URLS=true for development"
)
METADATA_HINT = "a cloud metadata endpoint cannot be allowlisted"
#: GuardedTransport keeps one connection pool per host (a pool is keyed by the IP it connects to, and a TLS
#: connection made for one name must not carry another name's requests); the least recently used is closed past this
MAX_POOLS = 32

_INET_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_ENTRY = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]/@\s]+)):(?P<port>[0-9]{1,5})")

#: allowlist entries as (host key, port); see `parse_allowlist`
Allowlist = frozenset[tuple[str, int]]


class BlockedAddress(httpx.ConnectError):
    """Raised by GuardedTransport for a request whose host is, or resolves to, an address it may not reach."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed `check_url`; `addresses` are the checked ones (empty when private URLs are allowed)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


class _Refused(Exception):
    """`detail` completes "host 'x' ..."; `blocked` is False when the host merely does not resolve."""

    def __init__(self, detail: str, blocked: bool = True, metadata: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.blocked = blocked
        self.metadata = metadata


def host_key(host: str) -> str:
    """`host` as allowlist entries are compared: lower-cased, no trailing dot, an IP address in canonical form."""
    name = host.strip("[]").removesuffix(".").lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def parse_allowlist(entries: Iterable[str]) -> Allowlist:
    """GENQUEUE_PRIVATE_URL_ALLOWLIST entries (`host:port`, `[v6]:port`) as (host key, port) pairs.

    ValueError, naming the entry, for one that is not host:port with a port from 1 to 65535, and for a cloud
    metadata name or address, which is never reachable.
    """
    parsed: set[tuple[str, int]] = set()
    for entry in entries:
        match = _ENTRY.fullmatch(entry.strip())
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(f"private URL allowlist entry {entry!r} is not host:port (e.g. sandbox:8900)")
        key = host_key(match["v6"] or match["host"])
        if match["v6"] is not None and ":" not in key:
            raise ValueError(f"private URL allowlist entry {entry!r}: brackets are for IPv6 addresses")
        if _is_metadata(key, _literal_addresses(key)):
            raise ValueError(f"private URL allowlist entry {entry!r} is a cloud metadata endpoint; never reachable")
        parsed.add((key, int(match["port"])))
    return frozenset(parsed)


def check_url(url: str, allow_private: bool, what: str = "URL", allowlist: Iterable[str] = ()) -> CheckedURL:
    """The URL checked for reaching only public addresses; InvalidRequest (one line naming `what`) otherwise.

    Refused: a scheme other than http/https, no host, user:password@ credentials, a metadata name, and a host that
    is or resolves to any non-public address, unless its host:port is in `allowlist` (then only metadata addresses
    are refused). With `allow_private` only scheme, host and credentials are checked.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        # httpx refuses dotted quads with leading zeros; name what they would mean to a laxer parser (inet_aton's)
        if not allow_private:
            _check_literal(what, url)
        raise InvalidRequest(f"{what} is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidRequest(f"{what} must be http or https" + (f", not {parsed.scheme!r}" if parsed.scheme else ""))
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise InvalidRequest(f"{what} has no host")
    if parsed.userinfo:
        raise InvalidRequest(f"{what} must not carry credentials (user:password@host); put a token in the path")
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    allowed = (host_key(host), port) in parse_allowlist(allowlist)
    addresses = () if allow_private else _check_host(what, host, port, allowed)
    return CheckedURL(url=url, scheme=parsed.scheme, host=host, port=port, addresses=addresses)


def _check_literal(what: str, url: str) -> None:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return
    if _literal_addresses(host):
        _check_host(what, host, 80)


def _check_host(what: str, host: str, port: int, allowlisted: bool = False) -> tuple[IPAddress, ...]:
    try:
        return _checked_addresses(host, port, allowlisted)
    except _Refused as exc:
        hint = f"; refused ({METADATA_HINT if exc.metadata else ALLOW_HINT})" if exc.blocked else ""
        raise InvalidRequest(f"{what} host {host!r} {exc.detail}{hint}") from None


def _checked_addresses(host: str, port: int, allowlisted: bool = False) -> tuple[IPAddress, ...]:
    """The addresses `host` stands for, in resolver order, all of them public; _Refused otherwise.

    For an `allowlisted` host only metadata names and addresses are refused.
    """
    name = host.removesuffix(".").lower()
    if name in METADATA_NAMES:
        raise _Refused("is a cloud metadata name", metadata=True)
    if not allowlisted and (name == "localhost" or name.endswith(".localhost")):
        raise _Refused("is a loopback name")
    addresses = _literal_addresses(name)
    verb = "is"
    if not addresses:
        verb = "resolves to"
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise _Refused("does not resolve", blocked=False) from None
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise _Refused("does not resolve", blocked=False)
    for address in addresses:
        if allowlisted and not _is_metadata("", (address,)):
            continue
        if (why := refusal(address)) is not None:
            detail = f"is {why}" if _spells(name, address) else f"{verb} {address}, {why}"
            raise _Refused(detail, metadata=_is_metadata("", (address,)))
    return addresses


def _is_metadata(name: str, addresses: Iterable[IPAddress]) -> bool:
    """True for a metadata name, or any address that is (or carries, inside IPv6) a metadata address."""
    if name in METADATA_NAMES:
        return True
    for address in addresses:
        embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        if address in METADATA_ADDRESSES or (embedded is not None and embedded[0] in METADATA_ADDRESSES):
            return True
    return False


def _spells(name: str, address: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(name) == address
    except ValueError:
        return False


def refusal(address: IPAddress) -> str | None:
    """Why `address` may not be reached ("a loopback address", ...), or None for a public address."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        ipv4, kind = embedded
        if (why := refusal(ipv4)) is not None:
            return f"{why} ({kind} {ipv4})"
        if kind == "IPv4-mapped":
            return None
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private or address in SHARED_ADDRESS_SPACE:
        return "a private address"
    if address.is_reserved or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "a reserved address"
    return None if address.is_global else "a non-public address"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64_PREFIX:
        return low, "NAT64"
    return (low, "IPv4-compatible") if int(address) >> 32 == 0 else None


def _literal_addresses(host: str) -> tuple[IPAddress, ...]:
    """`host` read as an IP address: by ipaddress, else by inet_aton's rules (1 to 4 parts, 0x hex, 0 octal).

    A part with a leading zero is read both as octal (inet_aton) and as decimal (other parsers), and both readings
    are returned; the inet_aton reading first, as it is what a connection would use. Empty for a name.
    """
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_PART.fullmatch(part) for part in parts):
        return ()
    readings = [_inet_aton(parts, octal=True), _inet_aton(parts, octal=False)]
    return tuple(dict.fromkeys(reading for reading in readings if reading is not None))


def _inet_aton(parts: list[str], octal: bool) -> ipaddress.IPv4Address | None:
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif octal and len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    return ipaddress.IPv4Address(sum(value << (8 * (3 - i)) for i, value in enumerate(head)) + last)


class GuardedTransport(httpx.BaseTransport):
    """An HTTP transport that connects only to checked public addresses, or to allowlisted host:port pairs.

    For every request (so every redirect hop a client follows) the host is resolved once and checked, and the
    request goes to the first checked address (the next ones on a connection failure), with the Host header and,
    for https, the TLS server name (SNI and certificate check) still the original host. A refused host raises
    BlockedAddress before any connection is made, a host that does not resolve httpx.ConnectError: both transport
    errors. An `allowlist` host:port (`parse_allowlist`; ValueError for a bad entry) may be private, never a
    metadata endpoint. With `allow_private` it is a plain pass-through. `inner` replaces the HTTPTransports it
    sends through (tests); its own transports keep to the caller's `Deadline` (shared/http_deadline.py).
    """

    def __init__(
        self, allow_private: bool, inner: httpx.BaseTransport | None = None, allowlist: Iterable[str] = ()
    ) -> None:
        self.allow_private = allow_private
        self.allowlist = parse_allowlist(allowlist)
        self._inner = deadline_transport() if inner is None and allow_private else inner
        self._pools: OrderedDict[str, httpx.HTTPTransport] = OrderedDict()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.allow_private:
            return self._transport_for("").handle_request(request)
        url = request.url
        host = url.raw_host.decode("ascii")
        try:
            if url.scheme not in DEFAULT_PORTS:
                raise _Refused(f"has scheme {url.scheme!r}, not http or https")
            port = url.port or DEFAULT_PORTS[url.scheme]
            addresses = _checked_addresses(host, port, (host_key(host), port) in self.allowlist)
        except _Refused as exc:
            error = BlockedAddress if exc.blocked else httpx.ConnectError
            raise error(f"{'blocked: ' if exc.blocked else ''}host {host!r} {exc.detail}", request=request) from None
        transport = self._transport_for(host)
        extensions = {**request.extensions, "sni_hostname": host} if url.scheme == "https" else request.extensions
        for index, address in enumerate(addresses):
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=str(address)),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return transport.handle_request(pinned)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
        raise AssertionError("_checked_addresses never returns no address")

    def _transport_for(self, host: str) -> httpx.BaseTransport:
        if self._inner is not None:
            return self._inner
        evicted = None
        with self._lock:
            transport = self._pools.pop(host, None)
            if transport is None:
                transport = deadline_transport()
            self._pools[host] = transport
            if len(self._pools) > MAX_POOLS:
                _, evicted = self._pools.popitem(last=False)
        if evicted is not None:
            evicted.close()
        return transport

    def close(self) -> None:
        with self._lock:
            transports = [*self._pools.values(), *([self._inner] if self._inner is not None else [])]
            self._pools.clear()
        for transport in transports:
            transport.close()


def guarded_client(
    allow_private: bool,
    timeout: float | httpx.Timeout,
    follow_redirects: bool = False,
    *,
    allowlist: Iterable[str] = (),
    inner: httpx.BaseTransport | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """An httpx.Client sending through a GuardedTransport; `kwargs` go to httpx.Client, `allowlist` and `inner`
    to the transport."""
    transport = GuardedTransport(allow_private, inner=inner, allowlist=allowlist)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=follow_redirects, **kwargs)
