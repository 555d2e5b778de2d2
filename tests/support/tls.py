"""A throwaway certificate authority and a redis-server speaking only TLS, signed by it, for tests and benches."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.local.processes import ServerProcess, free_port, port_open


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA, and a server certificate it signs for 127.0.0.1 and localhost, made with openssl in `directory`."""
    ca_key, ca, key, request, cert = (directory / name for name in ("ca.key", "ca.pem", "server.key", "req", "srv.pem"))
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=genqueue test CA",
             "-keyout", ca_key, "-out", ca)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", request)
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", extensions, "-out", cert)  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)


def _openssl(*argv: str | Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed to make test certificates"
    subprocess.run([openssl, *map(str, argv)], check=True, capture_output=True)


def start_tls_redis(directory: Path, certificates: Certificates, password: str) -> tuple[ServerProcess, int]:
    """redis-server with TLS only (no plain port), clients not asked for certificates; (process, TLS port)."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    argv = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir"]
    argv += [str(directory), "--tls-cert-file", str(certificates.cert), "--tls-key-file", str(certificates.key)]
    argv += ["--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", "no", "--requirepass", password]
    server = ServerProcess(argv, directory / "redis-tls.log")
    server.wait_until(lambda: port_open(port), what="redis-server (TLS)")
    return server, port
