"""The Kubernetes manifests (deploy/k8s): every one valid against the Kubernetes schemas
(``kubernetes-validate``, strict: unknown fields fail), rendered by kustomize (``kubectl
kustomize``) both as the base and as the example overlay, and wired together — the Secret and
ConfigMap each pod reads exist, every probe asks for the role its container runs, every PDB and
the HPA select a Deployment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cuefast.health import ROLES

pytestmark = pytest.mark.slow
K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
"""the oldest schema set the package ships, and the newest"""


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _sources() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=True, timeout=60
    )
    return _docs(out.stdout)


def _validate(doc: dict[str, Any]) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {exc.message}"
            ) from None


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_source_manifest_is_valid(path: Path) -> None:
    docs = _docs(path.read_text())
    assert docs, path
    for doc in docs:
        _validate(doc)


def test_the_validator_refuses_a_broken_manifest() -> None:
    """Control: strict validation catches a misspelled field and a wrong type."""
    (doc, *_) = _docs((K8S / "base" / "api.yaml").read_text())
    doc["spec"]["replicass"] = 2
    with pytest.raises(AssertionError, match="replicass"):
        _validate(doc)
    del doc["spec"]["replicass"]
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(AssertionError, match="invalid"):
        _validate(doc)


@pytest.mark.parametrize("overlay", ["base", "example"])
def test_rendered_manifests_are_valid_and_wired(overlay: str) -> None:
    docs = _render(overlay)
    for doc in docs:
        _validate(doc)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind["Deployment"]
    assert {d.removeprefix("cuefast-") for d in deployments} == {
        "api",
        "scheduler",
        "dispatcher",
        "snapshotter",
        "worker-example",
    }
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        assert (
            dep["spec"]["selector"]["matchLabels"].items()
            <= dep["spec"]["template"]["metadata"]["labels"].items()
        )
        (container,) = pod["containers"]
        args = container["args"]
        assert args[0] == "cuefast"
        role = "worker" if args[1] == "worker" else args[1]
        assert role in ROLES, name
        probes = [container[p] for p in ("livenessProbe", "readinessProbe", "startupProbe") if p in container]
        assert probes, f"{name} has no probe"
        for probe in probes:
            if "exec" in probe:
                assert probe["exec"]["command"] == ["cuefast", "health", "--role", role], name
            else:
                assert probe["httpGet"]["path"] in ("/health", "/status") and role == "api", name
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps or overlay == "base", name
            if "secretRef" in source:  # the base leaves the Secret to the operator
                assert source["secretRef"]["name"] in secrets or overlay == "base", name
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and overlay != "base":
                assert ref["key"] in secrets[ref["name"]]["data"], name
    for name, pdb in by_kind["PodDisruptionBudget"].items():
        selected = [
            d
            for d in deployments.values()
            if pdb["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, name
    (hpa,) = by_kind["HorizontalPodAutoscaler"].values()
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    assert deployments[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["requests"]["cpu"]  # a CPU target needs a CPU request
    if overlay == "example":
        backends = next(s for n, s in secrets.items() if n.startswith("cuefast-backends"))
        assert {"CUEFAST_REDIS_URL", "CUEFAST_DATABASE_URL"} <= backends["data"].keys()
        assert all(d["metadata"]["namespace"] == "cuefast" for d in docs if d["kind"] != "Namespace")
