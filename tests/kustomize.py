"""Render a kustomize overlay offline, for the tests (no kustomize binary ships on PyPI).

Only the part of kustomize our overlays use: `resources` (files and directories),
`components`, `images` (newName/newTag) and `patches`, inline or from a file, either a
JSON 6902 list applied to every resource its `target` selects or a strategic-merge patch
(maps merged, lists of named items merged by name). Any other field is refused, and so is
a patch that selects nothing or a JSON 6902 path that does not exist, so an overlay
this cannot render the way kustomize would fails loudly here instead of passing quietly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "components", "images", "patches"}
Document = dict[str, Any]


class KustomizeError(Exception):
    pass


def build(directory: Path) -> list[Document]:
    """The resources `directory/kustomization.yaml` renders, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise KustomizeError(f"{directory}: fields this renderer does not know: {unknown}")
    documents: list[Document] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            documents += build(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("components", []):
        component = directory / entry
        kind = yaml.safe_load((component / "kustomization.yaml").read_text())["kind"]
        if kind != "Component":
            raise KustomizeError(f"{component} is a {kind}, not a Component")
        documents += build(component)
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, documents)
    for image in kustomization.get("images", []):
        _set_image(image, documents)
    return documents


def _apply_patch(directory: Path, patch: Document, documents: list[Document]) -> None:
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    body = yaml.safe_load(text)
    target = patch.get("target")
    if isinstance(body, list):
        if not target:
            raise KustomizeError("a JSON 6902 patch needs a target")
        selected = [doc for doc in documents if _selects(target, doc)]
        if not selected:
            raise KustomizeError(f"patch target {target} selects nothing")
        for doc in selected:
            for operation in body:
                _json6902(doc, operation)
        return
    target = target or {"kind": body["kind"], "name": body["metadata"]["name"]}
    selected = [doc for doc in documents if _selects(target, doc)]
    if not selected:
        raise KustomizeError(f"patch target {target} selects nothing")
    for doc in selected:
        _merge(doc, body)


def _selects(target: Document, doc: Document) -> bool:
    if "kind" in target and doc.get("kind") != target["kind"]:
        return False
    return not ("name" in target and doc.get("metadata", {}).get("name") != target["name"])


def _json6902(doc: Document, operation: Document) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    op = operation["op"]
    if isinstance(parent, list):
        if op == "add" and last == "-":
            parent.append(operation["value"])
        elif op == "add":
            parent.insert(int(last), operation["value"])
        elif op == "replace":
            parent[int(last)] = operation["value"]
        elif op == "remove":
            del parent[int(last)]
        else:
            raise KustomizeError(f"unsupported op {op}")
        return
    if op in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"{operation['path']} does not exist in {doc['metadata']['name']}")
    if op in ("add", "replace"):
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"unsupported op {op}")


def _merge(into: Document, patch: Document) -> None:
    for key, value in patch.items():
        current = into.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif (
            isinstance(value, list)
            and isinstance(current, list)
            and all(isinstance(item, dict) and "name" in item for item in value + current)
        ):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    current.append(item)
        else:
            into[key] = value


def _set_image(image: Document, documents: list[Document]) -> None:
    found = False
    for doc in documents:
        for container in containers_of(doc):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                found = True
                new_name = image.get("newName", name)
                container["image"] = f"{new_name}:{image['newTag']}"
    if not found:
        raise KustomizeError(f"image {image['name']} is used by no container")


def containers_of(doc: Document) -> list[Document]:
    """The containers and init containers of a workload's pod template (none otherwise)."""
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))
