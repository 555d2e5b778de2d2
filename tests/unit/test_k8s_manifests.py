"""infra/k8s, rendered (base and the example overlay) and checked: every object against the Kubernetes schemas of a
pinned version (kubernetes-validate, strict: unknown fields fail), KEDA's ScaledObjects against a schema of the
fields used here, and the rules a reviewer checks, one test per object so a failure names it."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.k8s.render import render
from shared.lifecycle import vendor_call_lease_seconds
from shared.settings import ProviderOverride, Settings
from workers.app import worker_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
RENDERS = {"base": K8S / "base", "overlay": K8S / "overlays" / "example"}
#: the Kubernetes version the manifests are held to (the oldest one they are meant for)
KUBERNETES_VERSION = "1.31.0"
#: environment variables that are not genqueue settings, and who reads them
FOREIGN_ENV = {"AWS_ACCESS_KEY_ID": "boto3", "AWS_SECRET_ACCESS_KEY": "boto3", "FLOWER_BASIC_AUTH": "Flower"}
SECRET_NAME = "genqueue-secrets"
WORKER_QUEUES = {"submit", "poll", "finalize", "webhooks"}
NEVER_SCALED = {"beat", "api", "metrics", "flower"}

Obj = dict[str, Any]

#: keda.sh/v1alpha1 ScaledObject: the fields these manifests use, and no others
SCALED_OBJECT_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"const": "Deployment"},
                        "apiVersion": {"const": "apps/v1"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 1},
                        "replicas": {"type": "integer", "minimum": 1},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            # behavior is checked as an autoscaling/v2 HPA's, below
                            "properties": {"behavior": {"type": "object"}},
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "prometheus"},
                            "metadata": {
                                "type": "object",
                                "required": ["serverAddress", "query", "threshold"],
                                "additionalProperties": False,
                                "properties": {
                                    "serverAddress": {"type": "string", "pattern": "^https?://[^/\\s]+"},
                                    "query": {"type": "string", "minLength": 1},
                                    # KEDA's metadata values are strings
                                    "threshold": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                                    "activationThreshold": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                                    "ignoreNullValues": {"enum": ["true", "false"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@functools.cache
def _rendered(render_name: str) -> tuple[Obj, ...]:
    return tuple(render(RENDERS[render_name]))


def objects(render_name: str) -> list[Obj]:
    """The objects of a render (the same ones each time: tests read them, never change them)."""
    return list(_rendered(render_name))


def object_id(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def cases(*kinds: str) -> list[Any]:
    """One pytest param per object of those kinds (all kinds when none are given), in both renders."""
    params = []
    for render_name in RENDERS:
        for obj in objects(render_name):
            if not kinds or obj["kind"] in kinds:
                params.append(pytest.param(render_name, obj, id=f"{render_name}:{object_id(obj)}"))
    return params


def worker_cases() -> list[Any]:
    return [c for c in cases("Deployment") if worker_queues(c.values[1])]


def containers(deployment: Obj) -> list[Obj]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def find(render_name: str, kind: str, name: str) -> Obj:
    matching = [o for o in objects(render_name) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matching) == 1, f"{render_name}: expected one {kind}/{name}, found {len(matching)}"
    return matching[0]


def worker_queues(deployment: Obj) -> set[str]:
    """The queues a `celery -A workers worker` Deployment consumes (empty for any other)."""
    command = [*deployment["spec"]["template"]["spec"]["containers"][0].get("command", [])]
    if command[:4] != ["celery", "-A", "workers", "worker"]:
        return set()
    return set(command[command.index("-Q") + 1].split(",")) if "-Q" in command else set(WORKER_QUEUES)


def deployed_settings(render_name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the pods read: the defaults with the ConfigMap's values (no .env file)."""
    for key, value in find(render_name, "ConfigMap", "genqueue-config")["data"].items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def longest_step_seconds(settings: Settings, queue: str) -> float:
    """How long one step of `queue` may run: what the grace period of a worker consuming it must exceed."""
    if queue in {"submit", "poll"}:  # one vendor call and its writes, under the vendor call's lease
        return vendor_call_lease_seconds(settings)
    if queue == "finalize":  # the copies, each within max_copy_seconds, under the step's time limit
        return max(float(worker_config(settings)["task_time_limit"]), settings.max_copy_seconds)
    return settings.webhook_timeout_seconds


# --- rendering ----------------------------------------------------------------------------------------------


def kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("render_name", list(RENDERS))
def test_the_small_renderer_agrees_with_kustomize(render_name: str) -> None:
    command = kustomize_binary()
    if command is None:
        pytest.skip(
            "neither kustomize nor kubectl is installed: the manifests are checked as infra/k8s/render.py renders them"
        )
    output = subprocess.run([*command, str(RENDERS[render_name])], capture_output=True, text=True, check=False)
    if output.returncode != 0 and "unknown command" in output.stderr:
        pytest.skip(f"{command[0]} cannot render kustomizations: {output.stderr.strip()}")
    assert output.returncode == 0, output.stderr

    def keyed(items: Iterator[Obj] | list[Obj]) -> dict[tuple[str, str, str], Obj]:
        return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in items}

    assert keyed(objects(render_name)) == keyed(yaml.safe_load_all(output.stdout))


def test_renders_hold_every_part_of_genqueue() -> None:
    for render_name in RENDERS:
        names = {object_id(o) for o in objects(render_name)}
        for name in ("worker-submit", "worker-finalize", "beat", "api", "flower", "metrics"):
            assert f"Deployment/{name}" in names, f"{render_name}: no Deployment/{name}"
        assert "ConfigMap/genqueue-config" in names


def test_every_queue_has_workers() -> None:
    for render_name in RENDERS:
        consumed = set().union(*(worker_queues(d) for d in objects(render_name) if d["kind"] == "Deployment"))
        assert consumed == WORKER_QUEUES, f"{render_name}: queues consumed {sorted(consumed)}"


# --- schemas ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("render_name", "obj"), [c for c in cases() if c.values[1]["kind"] != "ScaledObject"])
def test_object_is_valid_kubernetes(render_name: str, obj: Obj) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{render_name}: {object_id(obj)} is not a valid Kubernetes {KUBERNETES_VERSION} object: {exc}")


@pytest.mark.parametrize(("render_name", "obj"), cases("ScaledObject"))
def test_scaled_object_is_valid_keda(render_name: str, obj: Obj) -> None:
    jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
    behavior = obj["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:  # KEDA hands it to the HPA it makes: hold it to that schema
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": obj["metadata"]["name"]},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": obj["spec"].get("maxReplicaCount", 100),
                "behavior": behavior,
            },
        }
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


# --- the reviewer's rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("render_name", "obj"), cases("Deployment"))
def test_every_container_has_limits_requests_and_probes(render_name: str, obj: Obj) -> None:
    # no Job or CronJob here: every container is a long-running process that can be probed
    for container in containers(obj):
        where = f"{render_name}: {object_id(obj)} container {container['name']}"
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind, {}))
            assert not missing, f"{where} has no resources.{kind} for {', '.join(sorted(missing))}"
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{where} has no {probe}"


def test_no_job_or_cronjob() -> None:
    # were there one, it would need its own rule (a Job is not probed the same way)
    for render_name in RENDERS:
        assert not [o for o in objects(render_name) if o["kind"] in {"Job", "CronJob"}]


@pytest.mark.parametrize("render_name", list(RENDERS))
def test_beat_is_exactly_one_replica_recreated_and_never_scaled(render_name: str) -> None:
    beat = find(render_name, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(("render_name", "obj"), cases("ScaledObject", "HorizontalPodAutoscaler"))
def test_autoscalers_target_only_workers(render_name: str, obj: Obj) -> None:
    target = obj["spec"]["scaleTargetRef"]["name"]
    assert target not in NEVER_SCALED, f"{render_name}: {object_id(obj)} scales {target}, which must not scale"
    assert worker_queues(find(render_name, "Deployment", target)), f"{target} is not a worker Deployment"


@pytest.mark.parametrize(("render_name", "obj"), cases("ScaledObject"))
def test_workers_scale_on_their_own_queues_steps_due(render_name: str, obj: Obj) -> None:
    queues = worker_queues(find(render_name, "Deployment", obj["spec"]["scaleTargetRef"]["name"]))
    for trigger in obj["spec"]["triggers"]:
        query = trigger["metadata"]["query"]
        match = re.fullmatch(
            r'sum\(genqueue_steps_due\{queue=~"([a-z|]+)"\}\)( \+ sum\(genqueue_batches_active\))?', query
        )
        assert match, f"{render_name}: {object_id(obj)} does not scale on the steps due: {query}"
        assert set(match.group(1).split("|")) == queues, f"{object_id(obj)} scales on other queues than it consumes"
        # the dispatcher runs on the poll workers: while a batch is active they may not be at zero
        assert bool(match.group(2)) == ("poll" in queues), f"{object_id(obj)}: active batches and the poll queue"
        assert trigger["metadata"].get("ignoreNullValues") == "false", "an exporter that is down must not look idle"


# not beat, Flower or the exporter: single replicas, where a budget could only block node drains
@pytest.mark.parametrize(
    ("render_name", "obj"),
    [*worker_cases(), *[c for c in cases("Deployment") if c.values[1]["metadata"]["name"] == "api"]],
)
def test_workers_and_api_have_a_disruption_budget(render_name: str, obj: Obj) -> None:
    labels = obj["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in objects(render_name)
        if pdb["kind"] == "PodDisruptionBudget"
        and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        and pdb["metadata"].get("namespace") == obj["metadata"].get("namespace")
    ]
    assert len(budgets) == 1, f"{render_name}: {object_id(obj)} has {len(budgets)} PodDisruptionBudgets"


@pytest.mark.parametrize(("render_name", "obj"), worker_cases())
def test_worker_grace_period_outlasts_its_longest_step(
    render_name: str, obj: Obj, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = worker_queues(obj)
    settings = deployed_settings(render_name, monkeypatch)
    longest = max(longest_step_seconds(settings, queue) for queue in queues)
    grace = obj["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    assert grace > longest, f"{object_id(obj)}: a {longest:g} s step would be cut by a {grace} s grace period"
    env = {e["name"] for c in containers(obj) for e in c.get("env", [])}
    assert "REMAP_SIGTERM" not in env, "SIGTERM must stay Celery's warm shutdown (it lets running steps finish)"


@pytest.mark.parametrize(("render_name", "obj"), worker_cases())
def test_worker_probes_read_the_health_files(render_name: str, obj: Obj, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = deployed_settings(render_name, monkeypatch)
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY workers ./workers" in dockerfile, "probes run /app/workers/health.py"
    container = obj["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert env.get("GENQUEUE_HEALTH_DIR") in mounts, "the health directory must be a volume (the root is read-only)"
    for probe in ("startupProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["python", "/app/workers/health.py", "live"], command
        max_age = float(command[command.index("--max-age") + 1])
        assert max_age >= 3 * settings.health_interval_seconds, f"{probe}: --max-age leaves room for no missed beat"
    assert container["readinessProbe"]["exec"]["command"] == ["python", "/app/workers/health.py", "ready"]


def env_names(obj: Obj) -> Iterator[tuple[str, str]]:
    if obj["kind"] == "ConfigMap":
        for key in obj.get("data", {}):
            yield key, f"{object_id(obj)} data"
    if obj["kind"] == "Deployment":
        for container in containers(obj):
            for entry in container.get("env", []):
                yield entry["name"], f"{object_id(obj)} container {container['name']}"


def is_setting(name: str) -> bool:
    """Whether `name` is a variable genqueue's Settings read (GENQUEUE_<FIELD>, GENQUEUE_PROVIDERS__<NAME>__<FIELD>)."""
    if not name.startswith("GENQUEUE_"):
        return False
    field = name.removeprefix("GENQUEUE_").lower()
    provider = re.fullmatch(r"providers__[a-z0-9_]+?__([a-z_]+)", field)
    if provider:
        return provider.group(1) in ProviderOverride.model_fields
    return field in Settings.model_fields and field != "providers"


@pytest.mark.parametrize(("render_name", "obj"), cases("ConfigMap", "Deployment"))
def test_every_variable_is_a_real_setting(render_name: str, obj: Obj) -> None:
    for name, where in env_names(obj):
        assert is_setting(name) or name in FOREIGN_ENV, f"{where}: {name} is neither a genqueue setting nor known"


@pytest.mark.parametrize(("render_name", "obj"), cases("Deployment"))
def test_secrets_come_only_from_the_secret_you_create(render_name: str, obj: Obj) -> None:
    for container in containers(obj):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == SECRET_NAME
                assert ref["key"] == entry["name"], "a secret's key is its variable's name (README.md's command)"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, "each container names the secret keys it needs, no more"


def test_no_secret_values_in_the_repository() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), f"{path.relative_to(ROOT)} holds a Secret"
    readme = (K8S / "README.md").read_text()
    assert re.search(rf"kubectl (-n \S+ )?create secret generic {SECRET_NAME} ", readme), "README.md: how to make it"
    used = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for render_name in RENDERS
        for obj in objects(render_name)
        if obj["kind"] == "Deployment"
        for container in containers(obj)
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    undocumented = sorted(key for key in used if key not in readme)
    assert not undocumented, f"README.md does not say how to create the secret keys {undocumented}"


@pytest.mark.parametrize(("render_name", "obj"), [c for c in cases("Deployment") if c.values[0] == "overlay"])
def test_overlay_images_are_pinned(render_name: str, obj: Obj) -> None:
    for container in containers(obj):
        image = container["image"]
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and "/" not in tag, f"{object_id(obj)}: {image} has no tag"
        assert tag not in {"latest", "base-placeholder"}, f"{object_id(obj)}: {image} is not a pinned image"
