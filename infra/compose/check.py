"""`make compose-check`: docker-compose.yml is secure by default, proven with `docker-compose config`.

1. Without its secrets it does not render: each required secret left out on its own makes `config` fail, naming it.
2. With every secret set (test values) it renders, for the default and the `dev` profile, and then
   - every published port is bound to 127.0.0.1, and only the services a person or a client opens publish any
     (Flower, the HTTP API); no service shares the host's network;
   - each secret reaches exactly the services that use it (the MinIO root account only MinIO and minio-init, the
     workers the least-privilege user, the webhook secret only what signs or refuses webhooks, ...).

The repository's own .env is never read (an empty --env-file), and the caller's environment is stripped of every
variable the compose file names, so the result does not depend on the machine it runs on.

    .venv/bin/python infra/compose/check.py [--file docker-compose.yml]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

REDIS_USERS = frozenset({"redis", "worker-submit", "worker-finalize", "beat", "metrics", "flower", "api", "cli"})
MINIO_ROOT = frozenset({"minio", "minio-init"})
S3_USERS = frozenset({"minio-init", "worker-submit", "worker-finalize", "api", "cli"})
#: every required secret, the services that may (and must) see it, and a URL-safe test value for it
SECRETS: dict[str, tuple[frozenset[str], str]] = {
    "REDIS_PASSWORD": (REDIS_USERS, "cctest0redis0password0a1b2c3"),
    "MINIO_ROOT_USER": (MINIO_ROOT, "cctest0rootuser"),
    "MINIO_ROOT_PASSWORD": (MINIO_ROOT, "cctest0root0password0d4e5f6"),
    "S3_ACCESS_KEY": (S3_USERS, "cctest0s3key"),
    "S3_SECRET_KEY": (S3_USERS, "cctest0s3secret0a7b8c9"),
    "WEBHOOK_SECRET": (frozenset({"worker-finalize", "cli"}), "whsec_Y2N0ZXN0IHdlYmhvb2sgc2VjcmV0IDAxMjM0NTY3"),
    "FLOWER_USER": (frozenset({"flower"}), "cctest0floweruser"),
    "FLOWER_PASSWORD": (frozenset({"flower"}), "cctest0flower0password0e1f2"),
}
#: the only services that may publish a port, and the only address they may bind it to
PUBLISHERS = frozenset({"flower", "api"})
LOOPBACK = "127.0.0.1"
PROFILES: tuple[tuple[str, ...], ...] = ((), ("dev",))

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?")


@dataclass(frozen=True)
class Compose:
    """How to run docker-compose on one compose file, isolated from .env and the caller's environment."""

    command: tuple[str, ...]
    file: Path
    project_dir: Path = REPO

    def run(self, env: Mapping[str, str], profiles: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """`config` with exactly `env` as the compose variables (plus what the process needs to run at all)."""
        text = self.file.read_text()
        referenced = set(_REFERENCE.findall(text))
        base = {
            name: value
            for name, value in os.environ.items()
            if name not in referenced and not name.startswith("COMPOSE_")
        }
        with _empty_env_file() as env_file:
            argv = [*self.command, "--env-file", str(env_file), "--project-directory", str(self.project_dir)]
            argv += ["-f", str(self.file)]
            for profile in profiles:
                argv += ["--profile", profile]
            return subprocess.run(
                [*argv, "config"], env=base | dict(env), capture_output=True, text=True, timeout=60, check=False
            )


@contextmanager
def _empty_env_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="compose-check-") as tmp:
        path = Path(tmp) / "empty.env"
        path.write_text("")
        yield path


def compose_command() -> tuple[str, ...] | None:
    """`docker-compose` (v1 or v2), else the `docker compose` plugin; None when neither is installed."""
    if (binary := shutil.which("docker-compose")) is not None:
        return (binary,)
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return (docker, "compose")
    return None


def test_env() -> dict[str, str]:
    """Every required secret set to its test value."""
    return {name: value for name, (_, value) in SECRETS.items()}


def check_required(compose: Compose) -> list[str]:
    """Problems with the secrets being required: each one missing must stop `config`, with its name."""
    problems = []
    text = compose.file.read_text()
    required = set(_REQUIRED.findall(text))
    for name in sorted(set(SECRETS) - required):
        problems.append(f"{name} is not required: use ${{{name}:?{name} is required ...}} (no default)")
    for name in sorted(required - set(SECRETS)):
        problems.append(f"{name} is required by the compose file but unknown to {Path(__file__).name}")
    example = _example_names()
    for name in sorted(set(SECRETS) - example):
        problems.append(f"{name} is missing from .env.example")
    for name in SECRETS:
        env = test_env()
        del env[name]
        result = compose.run(env)
        if result.returncode == 0:
            problems.append(f"docker-compose config renders without {name}")
        elif name not in result.stderr:
            problems.append(f"docker-compose config fails without {name} but does not name it: {result.stderr.strip()}")
    return problems


def _example_names() -> set[str]:
    if not ENV_EXAMPLE.is_file():
        return set()
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, sep, _ = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            names.add(name.strip())
    return names


def check_rendered(compose: Compose) -> tuple[list[str], dict[tuple[str, ...], list[str]]]:
    """Problems of the rendered configurations, and the ports each profile publishes (as `service: host:port`)."""
    problems: list[str] = []
    published: dict[tuple[str, ...], list[str]] = {}
    for profiles in PROFILES:
        label = f"--profile {' '.join(profiles)}" if profiles else "the default profile"
        result = compose.run(test_env(), profiles)
        if result.returncode != 0:
            problems.append(f"docker-compose config fails with every secret set ({label}): {result.stderr.strip()}")
            continue
        services: dict[str, dict[str, Any]] = (yaml.safe_load(result.stdout) or {}).get("services") or {}
        if profiles and not set(profiles) <= {p for s in services.values() for p in s.get("profiles", [])}:
            problems.append(f"no service is under {label}")
        ports, port_problems = _check_ports(services)
        published[profiles] = ports
        problems += [f"{label}: {problem}" for problem in port_problems]
        problems += [f"{label}: {problem}" for problem in _check_secret_scope(services)]
    return problems, published


def _check_ports(services: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    ports: list[str] = []
    problems: list[str] = []
    for name, service in sorted(services.items()):
        if service.get("network_mode") == "host":
            problems.append(f"{name} uses the host's network (every port it listens on is public)")
        for entry in service.get("ports") or []:
            host_ip, published = _port_binding(entry)
            ports.append(f"{name}: {host_ip or '*'}:{published}")
            if host_ip != LOOPBACK:
                problems.append(f"{name} publishes {entry!r} on {host_ip or 'every interface'}, not {LOOPBACK}")
            if name not in PUBLISHERS:
                problems.append(f"{name} publishes {entry!r}; only {', '.join(sorted(PUBLISHERS))} may publish")
    return ports, problems


def _port_binding(entry: object) -> tuple[str | None, str]:
    """(host_ip or None, published port) of one `ports` entry, short ("127.0.0.1:5555:5555/tcp") or long syntax."""
    if isinstance(entry, Mapping):
        host_ip = entry.get("host_ip")
        return (str(host_ip) if host_ip else None), str(entry.get("published", entry.get("target", "")))
    spec = str(entry).split("/", 1)[0]
    if spec.startswith("["):  # [::1]:5555:5555
        address, _, rest = spec[1:].partition("]:")
        return address, rest.split(":", 1)[0]
    parts = spec.rsplit(":", 2)
    if len(parts) == 3:
        return parts[0] or None, parts[1]
    return None, parts[0]  # "5555:5555" or "5555": every interface


def _check_secret_scope(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = []
    rendered = {name: json.dumps(service) for name, service in services.items()}
    for secret, (users, value) in SECRETS.items():
        seen = {name for name, text in rendered.items() if value in text}
        for name in sorted(seen - users):
            problems.append(f"{name} is given {secret}, which it does not use")
        for name in sorted((users & set(services)) - seen):
            problems.append(f"{name} needs {secret} but is not given it")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, default=COMPOSE_FILE, help="the compose file (default: %(default)s)")
    args = parser.parse_args(argv)
    command = compose_command()
    if command is None:
        print(
            "compose-check: no docker-compose (infra/local/ensure-system-deps.sh --test installs it)", file=sys.stderr
        )
        return 1
    compose = Compose(command, args.file.resolve())
    without = compose.run({})
    last_line = (without.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
    print(f"without the secrets, docker-compose config exits {without.returncode}: {last_line}")
    problems = check_required(compose)
    rendered_problems, published = check_rendered(compose)
    problems += rendered_problems
    for profiles, ports in published.items():
        label = f"--profile {' '.join(profiles)}" if profiles else "default"
        print(f"published ({label}): {', '.join(ports) or 'none'}")
    for problem in problems:
        print(f"compose-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"compose-check: ok ({len(SECRETS)} secrets required, each only where used; ports on {LOOPBACK} only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
