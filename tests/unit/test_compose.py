"""docker-compose.yml is secure by default: the checks of `make compose-check` (infra/compose/check.py), and proof
that they catch a file that is not (a port on every interface, a secret with a default, a secret given too widely).

Needs docker-compose (only to parse and render, no engine); `infra/local/ensure-system-deps.sh --test` installs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from infra.compose import check

COMMAND = check.compose_command()
pytestmark = pytest.mark.skipif(
    COMMAND is None, reason="docker-compose is not installed (infra/local/ensure-system-deps.sh --test installs it)"
)


def compose(file: Path = check.COMPOSE_FILE) -> check.Compose:
    assert COMMAND is not None
    return check.Compose(COMMAND, file)


def altered(tmp_path: Path, old: str, new: str) -> check.Compose:
    """The shipped compose file with `old` (which must occur) replaced by `new`, rendered from the repository."""
    text = check.COMPOSE_FILE.read_text()
    assert old in text, old
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(old, new))
    return compose(path)


def test_without_any_secret_config_fails_naming_one() -> None:
    result = compose().run({})
    assert result.returncode != 0
    assert any(name in result.stderr for name in check.SECRETS), result.stderr


@pytest.mark.parametrize("secret", sorted(check.SECRETS))
def test_each_secret_is_required(secret: str) -> None:
    env = check.test_env()
    del env[secret]
    result = compose().run(env)
    assert result.returncode != 0, f"renders without {secret}"
    assert secret in result.stderr


def test_an_empty_secret_counts_as_missing() -> None:
    result = compose().run(check.test_env() | {"REDIS_PASSWORD": ""})
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_the_shipped_file_passes_every_check() -> None:
    assert check.check_required(compose()) == []
    problems, published = check.check_rendered(compose())
    assert problems == []
    both = ["api: 127.0.0.1:8000", "flower: 127.0.0.1:5555"]
    assert {profiles: sorted(ports) for profiles, ports in published.items()} == {(): both, ("dev",): both}


def test_env_example_lists_every_required_secret() -> None:
    text = check.ENV_EXAMPLE.read_text()
    for name in check.SECRETS:
        assert re.search(rf"^{name}=$", text, re.MULTILINE), f"{name}= (empty) missing from .env.example"


def test_the_repositorys_env_file_is_not_read(tmp_path: Path) -> None:
    # a developer's .env (or exported variables) must not make a missing secret look present
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("".join(f"{name}={value}\n" for name, value in check.test_env().items()))
    shipped = check.COMPOSE_FILE.read_text()
    (project / "docker-compose.yml").write_text(shipped)
    isolated = check.Compose(compose().command, project / "docker-compose.yml", project_dir=project)
    assert isolated.run(check.test_env()).returncode == 0  # the project itself renders
    result = isolated.run({})
    assert result.returncode != 0
    assert any(name in result.stderr for name in check.SECRETS), result.stderr


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"127.0.0.1:5555:5555"', '"5555:5555"', "flower publishes"),
        ('"127.0.0.1:5555:5555"', '"0.0.0.0:5555:5555"', "on 0.0.0.0, not 127.0.0.1"),
        ('"127.0.0.1:5555:5555"', '"5555"', "on every interface"),
        ('expose: ["9808"]', 'ports: ["127.0.0.1:9808:9808"]', "metrics publishes"),
        ('profiles: ["dev"]\n', 'profiles: ["dev"]\n    ports: ["8900:8900"]\n', "--profile dev: sandbox publishes"),
        ('    profiles: ["dev"]\n', "    network_mode: host\n", "sandbox uses the host's network"),
    ],
)
def test_a_published_port_is_caught(tmp_path: Path, old: str, new: str, expected: str) -> None:
    problems, _ = check.check_rendered(altered(tmp_path, old, new))
    assert any(expected in problem for problem in problems), problems


def test_a_secret_with_a_default_is_caught(tmp_path: Path) -> None:
    changed = altered(
        tmp_path,
        "${FLOWER_PASSWORD:?FLOWER_PASSWORD is required, see .env.example}",
        "${FLOWER_PASSWORD:-change-me}",
    )
    problems = check.check_required(changed)
    assert any("renders without FLOWER_PASSWORD" in problem for problem in problems), problems


def test_root_credentials_given_to_a_worker_are_caught(tmp_path: Path) -> None:
    changed = altered(
        tmp_path,
        "AWS_ACCESS_KEY_ID: &s3-access-key ${S3_ACCESS_KEY:?",
        "AWS_ACCESS_KEY_ID: &s3-access-key ${MINIO_ROOT_USER:?",
    )
    problems, _ = check.check_rendered(changed)
    assert any("worker-submit is given MINIO_ROOT_USER" in problem for problem in problems), problems


def test_the_webhook_secret_given_to_beat_is_caught(tmp_path: Path) -> None:
    beat_env = "    environment:\n      GENQUEUE_REDIS_URL: *redis-url\n"
    changed = altered(
        tmp_path,
        beat_env + "\n  metrics:",
        beat_env + "      GENQUEUE_WEBHOOK_SECRET: *webhook-secret\n\n  metrics:",
    )
    problems, _ = check.check_rendered(changed)
    assert any("beat is given WEBHOOK_SECRET" in problem for problem in problems), problems


def test_rendered_values_are_what_the_processes_expect() -> None:
    result = compose().run(check.test_env(), ("dev",))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    secrets = check.test_env()
    password = secrets["REDIS_PASSWORD"]
    assert services["redis"]["command"][-2:] == ["--requirepass", password]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == (
        f"{secrets['FLOWER_USER']}:{secrets['FLOWER_PASSWORD']}"
    )
    for name in ("worker-submit", "worker-finalize", "cli"):
        env = services[name]["environment"]
        assert env["GENQUEUE_REDIS_URL"] == f"redis://:{password}@redis:6379/0"
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            secrets["S3_ACCESS_KEY"],
            secrets["S3_SECRET_KEY"],
        )
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("worker-submit", "worker-finalize"):
        assert json.loads(services[name]["environment"]["GENQUEUE_PRIVATE_URL_ALLOWLIST"]) == ["sandbox:8900"]
    assert services["sandbox"]["profiles"] == ["dev"]
    assert "environment" not in services["sandbox"]
