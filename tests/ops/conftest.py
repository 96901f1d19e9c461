"""Fixtures for the deployment files: kubectl (installed once if missing), rendered overlays.

The manifests are checked as Kubernetes would receive them, so every overlay is rendered
with `kubectl kustomize` exactly as `kubectl apply -k` does. A machine without kubectl fails
these tests loudly rather than skipping them: an unrendered manifest is an untested one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]


def _install_kubectl() -> None:
    """One quiet attempt with the system package manager (CI machines run as root)."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return
    subprocess.run(
        [apt_get, "install", "-y", "-qq", "kubectl"],
        capture_output=True,
        check=False,
        timeout=150,  # inside pytest-timeout's 180 s
    )


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        _install_kubectl()
        path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl not found on PATH and `apt-get install -y kubectl` did not provide it: "
            "the k8s/ overlays cannot be rendered. Install kubectl >= 1.27 (kustomize v5)."
        )
    return path


def render_overlay(kubectl: str, overlay: str) -> list[Manifest]:
    """`kubectl kustomize k8s/overlays/<overlay>`, parsed into a list of objects."""
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Manifest]]:
    return {overlay: render_overlay(kubectl, overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def manifests(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    return rendered[overlay]


@pytest.fixture
def prod(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered["prod"]
