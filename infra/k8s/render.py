"""A small kustomize, for checking these manifests where no `kubectl`/`kustomize` binary is installed.

It renders only what infra/k8s uses: `resources` (files and directories with a kustomization.yaml), `namespace`,
`images`, `replicas` and `patches` holding JSON 6902 operations (add, replace, remove) with a `target`. Anything
else in a kustomization is refused rather than ignored, so it cannot silently render something else than
`kubectl kustomize` would; where that binary is installed, tests/unit/test_k8s_manifests.py checks that both give
the same objects.

    python infra/k8s/render.py infra/k8s/overlays/example     # the objects, as YAML, like `kubectl kustomize`
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
#: kinds without a namespace among those a genqueue deployment may hold
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}
#: an image reference: name (with any registry and port), then an optional tag, then an optional digest
IMAGE = re.compile(r"^(?P<name>[^@]*?)(?::(?P<tag>[^:/@]+))?(?P<digest>@.*)?$")

Obj = dict[str, Any]


class RenderError(ValueError):
    """A kustomization this renderer does not handle, or a patch that does not apply."""


def render(directory: Path) -> list[Obj]:
    """The objects the kustomization in `directory` builds, in the order its resources list them."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise RenderError(f"{directory}: fields this renderer does not handle: {', '.join(sorted(unknown))}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in kustomization.get("patches", []):
        apply_patch(objects, patch, directory)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for obj in objects:
            set_image(obj, image)
    for replicas in kustomization.get("replicas", []):
        for obj in objects:
            if (
                obj["kind"] in {"Deployment", "StatefulSet", "ReplicaSet"}
                and obj["metadata"]["name"] == replicas["name"]
            ):
                obj["spec"]["replicas"] = replicas["count"]
    return objects


def matches(obj: Obj, target: dict[str, str]) -> bool:
    """Whether `obj` is selected by a patch's target (each field a regular expression, as in kustomize)."""
    unknown = set(target) - TARGET_FIELDS
    if unknown:
        raise RenderError(f"patch target fields this renderer does not handle: {', '.join(sorted(unknown))}")
    group, _, version = obj["apiVersion"].rpartition("/")
    values = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(re.fullmatch(pattern, values[field]) for field, pattern in target.items())


def apply_patch(objects: list[Obj], patch: Obj, directory: Path) -> None:
    """Apply one `patches` entry (inline or from `path`) to every object its target selects."""
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise RenderError(f"{directory}: only JSON 6902 patches (a list of operations) are handled")
    selected = [obj for obj in objects if matches(obj, patch.get("target", {}))]
    if not selected:
        raise RenderError(f"{directory}: patch target {patch.get('target')} selects nothing")
    for obj in selected:
        for operation in operations:
            apply_operation(obj, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"not a JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_operation(obj: Obj, operation: Obj) -> None:
    """One JSON 6902 add, replace or remove, in place."""
    op, parts = operation["op"], _pointer(operation["path"])
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op == "replace":
            parent[int(last)] = value
        elif op == "remove":
            del parent[int(last)]
        else:
            raise RenderError(f"JSON patch op {op!r} is not handled")
        return
    if op in {"replace", "remove"} and last not in parent:
        raise RenderError(f"{op} {operation['path']}: no such field")
    if op in {"add", "replace"}:
        parent[last] = value
    elif op == "remove":
        del parent[last]
    else:
        raise RenderError(f"JSON patch op {op!r} is not handled")


def set_image(node: Any, image: Obj) -> None:
    """Rewrite every container image named `image["name"]` below `node`, as kustomize's `images` does."""
    if isinstance(node, list):
        for item in node:
            set_image(item, image)
        return
    if not isinstance(node, dict):
        return
    for key in ("containers", "initContainers"):
        for container in node.get(key, []):
            parsed = IMAGE.match(container.get("image", ""))
            if parsed is None:
                continue
            name, tag = parsed.group("name", "tag")
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            else:
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
    for key, value in node.items():
        if key not in ("containers", "initContainers"):
            set_image(value, image)


if __name__ == "__main__":
    sys.stdout.write(yaml.safe_dump_all(render(Path(sys.argv[1])), sort_keys=False))
