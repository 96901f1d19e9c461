"""The Kubernetes manifests, as rendered from k8s/overlays/*, keep the promises of DESIGN.md §8.

Every object validates offline against a pinned Kubernetes schema; the rest are the
invariants a review would otherwise have to re-check by eye on every change: probes that
hit real routes, a shutdown that drains before it kills, nothing running as root, sizes
that fit the PostgreSQL connection budget written in k8s/README.md.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from .conftest import K8S, Manifest

# The Kubernetes API version the manifests must be valid for (kubernetes-validate ships
# the schemas; >= 1.31 is what pyproject.toml asks for, so this one is always present).
KUBERNETES_VERSION = "1.31.0"

API, WORKER, BEAT, MIGRATE = "tripbook-api", "tripbook-worker", "tripbook-beat", "tripbook-migrate"
METRICS_DIR = "/var/run/tripbook/metrics"
TMP_DIR = "/tmp"  # noqa: S108 - a mount point checked, not a file created
PLACEHOLDER = "CHANGE_ME"

# The PostgreSQL server the connection budget in k8s/README.md is written for.
PG_MAX_CONNECTIONS = 300
PG_RESERVED = 3 + 20  # superuser_reserved_connections + admin, monitoring and replication

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


# ---- helpers --------------------------------------------------------------------------


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        obj
        for obj in manifests
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Manifest) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        spec: dict[str, Any] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    template_spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return template_spec


def workloads(manifests: list[Manifest]) -> Iterator[Manifest]:
    for obj in manifests:
        if obj["kind"] in POD_TEMPLATE_KINDS | {"CronJob"}:
            yield obj


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(obj: Manifest, name: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(obj)["containers"]
    if name is None:
        assert len(containers) == 1, f"{obj['metadata']['name']}: expected one container"
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def container_env(manifests: list[Manifest], c: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            config_map = one(manifests, "ConfigMap", source["configMapRef"]["name"])
            env.update(config_map.get("data", {}))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def int_env(env: dict[str, str], name: str) -> int:
    assert name in env, f"{name} is not set for this container"
    return int(env[name])


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def template_labels(obj: Manifest) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_SUFFIX = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"unparsable resource quantity {value!r}"
    return float(match[1]) * _SUFFIX[match[2]]


def surge(strategy: dict[str, Any], replicas: int) -> int:
    """Extra pods a RollingUpdate may add: what the budget must count during a rollout."""
    if strategy.get("type") == "Recreate":
        return 0
    value = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when untagged); digests count as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# ---- rendering and schema -------------------------------------------------------------


def test_pinned_schema_version_ships_with_kubernetes_validate() -> None:
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()


def test_overlay_renders_every_role(manifests: list[Manifest]) -> None:
    for name in (API, WORKER, BEAT):
        one(manifests, "Deployment", name)
    one(manifests, "Job", MIGRATE)
    one(manifests, "Service", API)
    one(manifests, "ServiceAccount", "tripbook")
    assert find(manifests, "NetworkPolicy")
    assert len(find(manifests, "ConfigMap")) == 1
    assert len(find(manifests, "Namespace")) == 1


def test_every_object_validates_against_the_kubernetes_schema(manifests: list[Manifest]) -> None:
    errors = []
    for obj in manifests:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_every_namespaced_object_lands_in_the_overlay_namespace(
    manifests: list[Manifest],
) -> None:
    namespace = find(manifests, "Namespace")[0]["metadata"]["name"]
    for obj in manifests:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]


def test_every_object_carries_the_app_label(manifests: list[Manifest]) -> None:
    for obj in manifests:
        if obj["kind"] != "Namespace":
            labels = obj["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name") == "tripbook", obj["metadata"]["name"]


# ---- the API: probes, draining, scaling -----------------------------------------------


def test_api_probes_use_the_health_endpoints(manifests: list[Manifest]) -> None:
    api = container(one(manifests, "Deployment", API))
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": 8000}
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        assert api[probe]["httpGet"]["path"] == path, probe
        assert api[probe]["httpGet"]["port"] in ("http", 8000), probe


def routes_get(app: Any, path: str) -> bool:
    """Whether a GET of `path` reaches a route of the app (what a probe or scraper does).

    Matching through the router, not listing `app.routes`: recent FastAPI versions keep
    included routers as single entries there, without their paths.
    """
    from starlette.routing import Match

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_probe_paths_exist_in_the_app(prod: list[Manifest]) -> None:
    from tripbook.main import create_app

    deployment = one(prod, "Deployment", API)
    api = container(deployment)
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    paths = {api[probe]["httpGet"]["path"] for probe in probes}
    paths.add(deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"])
    app = create_app()
    assert not routes_get(app, "/no-such-probe"), "the check itself must be able to fail"
    missing = sorted(path for path in paths if not routes_get(app, path))
    assert not missing, f"probed or scraped but not routed by the app: {missing}"


def test_api_shutdown_drains_before_it_is_killed(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment", API)
    api = container(deployment)
    pre_stop = api["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep_s = int(pre_stop[1])
    assert sleep_s >= 5, "endpoints need a few seconds to drop the pod everywhere"
    graceful_s = int_env(container_env(manifests, api), "GUNICORN_GRACEFUL_TIMEOUT")
    grace_s = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace_s > sleep_s + graceful_s


def test_api_rollout_never_lowers_capacity(manifests: list[Manifest]) -> None:
    strategy = one(manifests, "Deployment", API)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert surge(strategy, 1) >= 1, "maxUnavailable 0 needs a surge to make progress"


def test_api_service_selects_api_pods_only(manifests: list[Manifest]) -> None:
    service = one(manifests, "Service", API)
    selector = service["spec"]["selector"]
    assert labels_match(selector, template_labels(one(manifests, "Deployment", API)))
    for name in (WORKER, BEAT):
        assert not labels_match(selector, template_labels(one(manifests, "Deployment", name)))
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_api_pods_are_scraped_by_prometheus(manifests: list[Manifest]) -> None:
    template = one(manifests, "Deployment", API)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_hpa_and_pdb_target_the_api(manifests: list[Manifest], overlay: str) -> None:
    api = one(manifests, "Deployment", API)
    hpas = find(manifests, "HorizontalPodAutoscaler")
    pdbs = find(manifests, "PodDisruptionBudget")
    if overlay == "prod":
        assert len(hpas) == 1
        assert len(pdbs) == 1
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            "apps/v1",
            "Deployment",
            API,
        )
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert hpa["spec"]["minReplicas"] >= 2, "one API pod is a single point of failure"
        assert "replicas" not in api["spec"], "the HPA owns the count; apply would reset it"
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector == api["spec"]["selector"]["matchLabels"]
        assert labels_match(selector, template_labels(api))
        for name in (WORKER, BEAT):
            assert not labels_match(selector, template_labels(one(manifests, "Deployment", name)))


def test_dev_runs_one_api_pod(rendered: dict[str, list[Manifest]]) -> None:
    assert one(rendered["dev"], "Deployment", API)["spec"]["replicas"] == 1


# ---- workers, beat, migrations ------------------------------------------------------


def test_worker_command_liveness_and_grace(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment", WORKER)
    worker = container(deployment)
    argv = [*worker["command"], *worker["args"]]
    assert argv[:4] == ["celery", "-A", "workers.app", "worker"]
    assert "--queues=payments,email,maintenance,celery" in argv
    concurrency = next(a for a in argv if a.startswith("--concurrency="))
    reference = re.fullmatch(r"--concurrency=\$\((\w+)\)", concurrency)
    assert reference, "concurrency comes from the container's env"
    assert int_env(container_env(manifests, worker), reference[1]) >= 1
    liveness = " ".join(worker["livenessProbe"]["exec"]["command"])
    assert "inspect ping" in liveness
    assert "celery@${HOSTNAME}" in liveness, "ping this pod's worker, not any worker"
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= 120


def test_beat_is_a_single_replica_replaced_with_recreate(manifests: list[Manifest]) -> None:
    beat = one(manifests, "Deployment", BEAT)
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    argv = [*container(beat)["command"], *container(beat)["args"]]
    assert argv[:4] == ["celery", "-A", "workers.app", "beat"]
    assert "--schedule=/tmp/celerybeat-schedule" in argv
    assert not [h for h in find(manifests, "HorizontalPodAutoscaler") if "beat" in str(h)]


def test_migrate_job_is_bounded_and_cleans_up(manifests: list[Manifest]) -> None:
    job = one(manifests, "Job", MIGRATE)
    assert container(job)["command"] == ["tripbook", "migrate", "--no-create-database"]
    assert 0 < job["spec"]["backoffLimit"] <= 5
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


def test_one_image_for_every_role(manifests: list[Manifest]) -> None:
    images = {c["image"] for obj in workloads(manifests) for c in all_containers(pod_spec(obj))}
    assert len(images) == 1, images


def test_images_are_pinned(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        for c in all_containers(pod_spec(obj)):
            tag = image_tag(c["image"])
            assert tag is not None, f"{c['image']} is untagged (that means :latest)"
            assert tag != "latest", c["image"]


def test_prod_image_is_a_release_version(prod: list[Manifest]) -> None:
    image = container(one(prod, "Deployment", API))["image"]
    assert re.fullmatch(r"v?\d+\.\d+\.\d+(?:[-.+][\w.]+)?", image_tag(image) or ""), image


# ---- pod hardening --------------------------------------------------------------------


def test_no_container_can_run_as_root(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        spec = pod_spec(obj)
        pod_context = spec.get("securityContext", {})
        for c in all_containers(spec):
            context = {**pod_context, **c.get("securityContext", {})}
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert isinstance(context.get("runAsUser"), int), where
            assert context["runAsUser"] != 0, where
            assert context.get("runAsGroup", 1) != 0, where


def test_containers_are_locked_down(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        spec = pod_spec(obj)
        seccomp = spec.get("securityContext", {}).get("seccompProfile", {}).get("type")
        for c in all_containers(spec):
            context = c["securityContext"]
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert context.get("privileged", False) is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert "RuntimeDefault" in (seccomp, context.get("seccompProfile", {}).get("type"))


def test_writable_paths_are_empty_dirs(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        spec = pod_spec(obj)
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in all_containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get(TMP_DIR) in empty_dirs, f"{obj['metadata']['name']}: /tmp"


def test_api_metrics_dir_is_a_shared_empty_dir(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment", API)
    api = container(deployment)
    assert container_env(manifests, api)["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR
    mounts = {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert "emptyDir" in volumes[mounts[METRICS_DIR]]


def test_multiprocess_metrics_always_have_a_writable_directory(
    manifests: list[Manifest],
) -> None:
    # prometheus_client writes its per-process files there; on a read-only root filesystem
    # the directory must be an emptyDir, or the process fails at its first sample.
    using = []
    for obj in workloads(manifests):
        spec = pod_spec(obj)
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in all_containers(spec):
            directory = container_env(manifests, c).get("PROMETHEUS_MULTIPROC_DIR")
            if directory is None:
                continue
            using.append(obj["metadata"]["name"])
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get(directory) in empty_dirs, f"{obj['metadata']['name']}: {directory}"
    assert set(using) >= {API, WORKER}
    assert BEAT not in using  # beat runs no tasks: nothing to count


def test_every_container_has_requests_and_limits(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        for c in all_containers(pod_spec(obj)):
            resources = c.get("resources", {})
            where = f"{obj['metadata']['name']}/{c['name']}"
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None, f"{where}: no {resource} request"
                assert limit is not None, f"{where}: no {resource} limit"
                assert quantity(request) <= quantity(limit), f"{where}: {resource}"


def test_pods_mount_no_service_account_token(manifests: list[Manifest]) -> None:
    account = one(manifests, "ServiceAccount", "tripbook")
    assert account["automountServiceAccountToken"] is False
    for obj in workloads(manifests):
        spec = pod_spec(obj)
        assert spec["serviceAccountName"] == "tripbook", obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, obj["metadata"]["name"]


def test_namespace_enforces_the_restricted_pod_security_standard(
    manifests: list[Manifest],
) -> None:
    labels = find(manifests, "Namespace")[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- network ---------------------------------------------------------------------------


def _policies_for(manifests: list[Manifest], pod_labels: dict[str, str]) -> list[Manifest]:
    return [
        policy
        for policy in find(manifests, "NetworkPolicy")
        if labels_match(policy["spec"]["podSelector"].get("matchLabels", {}), pod_labels)
    ]


def _ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(port.get("protocol", "TCP"), port["port"]) for rule in rules for port in rule["ports"]}


def test_network_policy_lets_in_only_api_http_and_worker_metrics(manifests: list[Manifest]) -> None:
    for name in (API, WORKER, BEAT):
        labels = template_labels(one(manifests, "Deployment", name))
        policies = _policies_for(manifests, labels)
        assert any("Ingress" in p["spec"]["policyTypes"] for p in policies), name
        ingress = _ports([r for p in policies for r in p["spec"].get("ingress", [])])
        expected = {API: {("TCP", 8000)}, WORKER: {("TCP", 9100)}, BEAT: set()}[name]
        assert ingress == expected, name


def test_network_policy_admits_only_the_ingress_and_monitoring_namespaces(
    manifests: list[Manifest],
) -> None:
    """No rule lets any pod in: the API only from the ingress controller's and Prometheus'
    namespaces, worker metrics only from Prometheus'. Otherwise a pod anywhere could send
    its own X-Forwarded-For from inside TRIPBOOK_TRUSTED_PROXIES."""
    expected = {
        API: {"ingress-nginx", "monitoring"},
        WORKER: {"monitoring"},
    }
    for name, namespaces in expected.items():
        labels = template_labels(one(manifests, "Deployment", name))
        rules = [r for p in _policies_for(manifests, labels) for r in p["spec"].get("ingress", [])]
        assert rules, name
        admitted = set()
        for rule in rules:
            assert rule.get("from"), f"{name}: a rule without 'from' admits every pod"
            for peer in rule["from"]:
                assert set(peer) == {"namespaceSelector"}, (name, peer)
                admitted.add(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                )
        assert admitted == namespaces, name


def test_forwarded_for_is_trusted_from_the_pod_network_only(manifests: list[Manifest]) -> None:
    config_map = find(manifests, "ConfigMap")[0]
    trusted = [
        ip_network(cidr) for cidr in config_map["data"]["TRIPBOOK_TRUSTED_PROXIES"].split(",")
    ]
    assert trusted
    # Narrower than a whole private block, where load balancers and nodes live too.
    assert all(network.prefixlen >= 16 for network in trusted), trusted


def test_network_policy_allows_the_egress_tripbook_needs(manifests: list[Manifest]) -> None:
    needed = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 6379), ("TCP", 443), ("TCP", 587)}
    for obj in workloads(manifests):
        policies = _policies_for(manifests, obj["spec"]["template"]["metadata"]["labels"])
        assert any("Egress" in p["spec"]["policyTypes"] for p in policies)
        egress = _ports([r for p in policies for r in p["spec"].get("egress", [])])
        assert egress == needed, obj["metadata"]["name"]


# ---- configuration and secrets ----------------------------------------------------------


@pytest.mark.parametrize(("name", "env"), [("dev", "development"), ("prod", "production")])
def test_overlay_sets_the_environment(
    rendered: dict[str, list[Manifest]], name: str, env: str
) -> None:
    config_map = find(rendered[name], "ConfigMap")[0]
    assert config_map["data"]["TRIPBOOK_ENV"] == env


def test_tripbook_variables_are_settings(manifests: list[Manifest]) -> None:
    # Settings ignores unknown variables, so a typo here would silently do nothing.
    from tripbook.settings import Settings

    known = {f"TRIPBOOK_{field.upper()}" for field in Settings.model_fields}
    names = {key for cm in find(manifests, "ConfigMap") for key in cm["data"]}
    names |= {key for s in find(manifests, "Secret") for key in s.get("stringData", {})}
    for obj in workloads(manifests):
        for c in all_containers(pod_spec(obj)):
            names |= {item["name"] for item in c.get("env", [])}
    unknown = {n for n in names if n.startswith("TRIPBOOK_")} - known
    assert not unknown


def test_every_container_environment_is_valid_settings(
    manifests: list[Manifest], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tripbook.settings import Settings

    # Prod's Secret is created out of band: stand in for it with well-formed values.
    secret = {"TRIPBOOK_JWT_SECRET": "x" * 48}
    for example in find(manifests, "Secret"):
        secret |= example.get("stringData", {})
    for obj in workloads(manifests):
        for c in all_containers(pod_spec(obj)):
            env = secret | container_env(manifests, c)
            for name in [n for n in os.environ if n.startswith(("TRIPBOOK_", "GUNICORN_"))]:
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = Settings(_env_file=None)
            assert settings.env == ("production" if overlay == "prod" else "development")
            for name, value in env.items():
                if name.startswith("GUNICORN_") and name != "GUNICORN_BIND":
                    assert value.isdigit(), f"{name}={value!r} is read as an int"


def test_secrets_come_from_tripbook_secrets(manifests: list[Manifest]) -> None:
    for obj in workloads(manifests):
        for c in all_containers(pod_spec(obj)):
            refs = [s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s]
            assert refs == ["tripbook-secrets"], obj["metadata"]["name"]


def test_secret_example_holds_placeholders_only(rendered: dict[str, list[Manifest]]) -> None:
    secrets = [s for manifests in rendered.values() for s in find(manifests, "Secret")]
    assert secrets, "the dev overlay ships the example Secret"
    for secret in secrets:
        assert secret["metadata"]["annotations"]["tripbook.io/example"] == "true"
        values = dict(secret.get("stringData", {}))
        values |= {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        assert {"TRIPBOOK_DATABASE_URL", "TRIPBOOK_JWT_SECRET"} <= set(values)
        for key, value in values.items():
            assert PLACEHOLDER in value, f"{key} is not a placeholder"


def test_prod_ships_no_secret(prod: list[Manifest]) -> None:
    # `kubectl apply -k` must never overwrite the real Secret with placeholders.
    assert find(prod, "Secret") == []


def test_secret_files_in_the_tree_are_examples() -> None:
    secret_files = [
        p
        for p in K8S.rglob("*.yaml")
        if re.search(r"^kind:\s*Secret\b", p.read_text(encoding="utf-8"), re.M)
    ]
    assert secret_files
    for path in secret_files:
        assert path.name.endswith(".example.yaml"), path


# ---- the connection budget ---------------------------------------------------------------


def connection_budget(manifests: list[Manifest]) -> dict[str, int]:
    """Connections at the worst moment: autoscaled to the maximum, in the middle of a rollout."""
    budget: dict[str, int] = {}

    api = one(manifests, "Deployment", API)
    api_env = container_env(manifests, container(api))
    hpa = one(manifests, "HorizontalPodAutoscaler", API)
    api_pods = hpa["spec"]["maxReplicas"]
    api_pods += surge(api["spec"]["strategy"], api_pods)
    per_process = int_env(api_env, "TRIPBOOK_DB_POOL_SIZE") + int_env(
        api_env, "TRIPBOOK_DB_MAX_OVERFLOW"
    )
    budget["api"] = api_pods * int_env(api_env, "GUNICORN_WORKERS") * per_process

    worker = one(manifests, "Deployment", WORKER)
    worker_container = container(worker)
    worker_env = container_env(manifests, worker_container)
    worker_pods = worker["spec"]["replicas"]
    worker_pods += surge(worker["spec"]["strategy"], worker_pods)
    concurrency = next(a for a in worker_container["args"] if a.startswith("--concurrency="))
    processes = int_env(worker_env, concurrency.removeprefix("--concurrency=$(").rstrip(")"))
    per_process = int_env(worker_env, "TRIPBOOK_DB_POOL_SIZE") + int_env(
        worker_env, "TRIPBOOK_DB_MAX_OVERFLOW"
    )
    budget["worker"] = worker_pods * processes * per_process

    for name, kind in (("beat", "Deployment"), ("migrate", "Job")):
        obj = one(manifests, kind, f"tripbook-{name}")
        env = container_env(manifests, container(obj))
        budget[name] = int_env(env, "TRIPBOOK_DB_POOL_SIZE") + int_env(
            env, "TRIPBOOK_DB_MAX_OVERFLOW"
        )
    return budget


def test_prod_fits_the_postgres_connection_budget(prod: list[Manifest]) -> None:
    total = sum(connection_budget(prod).values())
    assert total <= PG_MAX_CONNECTIONS - PG_RESERVED


def test_readme_worked_example_matches_prod(prod: list[Manifest]) -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    budget = connection_budget(prod)
    assert f"max_connections = {PG_MAX_CONNECTIONS}" in readme
    assert f"usable = {PG_MAX_CONNECTIONS - PG_RESERVED}" in readme
    for part, connections in budget.items():
        assert f"{part} = {connections}" in readme, f"README's {part} line is out of date"
    assert f"total = **{sum(budget.values())}**" in readme


# ---- the release procedure in k8s/README.md ---------------------------------------------

MIGRATE_FIRST_SELECTOR = "app.kubernetes.io/component notin (api,worker,beat)"


def test_migrate_first_selector_applies_the_job_and_what_it_needs(prod: list[Manifest]) -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert f"-l '{MIGRATE_FIRST_SELECTOR}'" in readme
    excluded = {"api", "worker", "beat"}
    selected = {
        (obj["kind"], obj["metadata"]["name"])
        for obj in prod
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in excluded
    }
    config_map = find(prod, "ConfigMap")[0]["metadata"]["name"]
    assert {
        ("Job", MIGRATE),
        ("ConfigMap", config_map),
        ("ServiceAccount", "tripbook"),
        ("Namespace", "tripbook"),
    } <= selected
    assert not {kind for kind, _ in selected} & {"Deployment", "Service", "HorizontalPodAutoscaler"}
