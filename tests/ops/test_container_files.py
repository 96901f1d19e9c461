"""deploy/Dockerfile, .dockerignore and deploy/docker-compose.yml, checked without a Docker engine.

No engine (and no compose plugin) runs on the development and CI machines, so these tests
read the files the way Docker does (line continuations, stage ancestry, global ARGs,
.dockerignore exceptions, YAML merge keys) and check what a build or `compose up` relies on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"

APP_ROLES = ("migrate", "api", "worker", "beat")
SANDBOXES = ("payment-gateway", "smtp-sink")
TMP_DIR = "/tmp"  # noqa: S108 - a mount point checked, not a file created
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "python3-dev", "libpq-dev")


# ---- a small Dockerfile reader ------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    name: str
    base: str
    parent: Stage | None
    own: list[Instruction] = field(default_factory=list)

    def instructions(self) -> list[Instruction]:
        """What the stage's image is built from: its ancestors' instructions, then its own."""
        inherited = self.parent.instructions() if self.parent else []
        return [*inherited, *self.own]

    def runs(self) -> list[str]:
        return [i.args for i in self.instructions() if i.keyword == "RUN"]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.instructions():
            if instruction.keyword == "ENV":
                for pair in shlex.split(instruction.args):
                    key, _, value = pair.partition("=")
                    env[key] = value
        return env

    def last(self, keyword: str) -> str | None:
        values = [i.args for i in self.instructions() if i.keyword == keyword]
        return values[-1] if values else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        """The stage `docker build` produces without --target."""
        return self.stages[-1]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments vanish even inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending.strip():
        lines.append(pending)
    return lines


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default.strip('"')
        elif keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            parent = next((s for s in stages if s.name == base), None)
            stages.append(Stage(name=name, base=base, parent=parent))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].own.append(Instruction(keyword, args))
    return Dockerfile(global_args, stages)


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) for each COPY of the stage itself."""
    result = []
    for instruction in stage.own:
        if instruction.keyword != "COPY":
            continue
        words = shlex.split(instruction.args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        result.append((source_stage, paths[:-1], paths[-1]))
    return result


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


# ---- a small .dockerignore matcher --------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!src/", "**/__pycache__"]
    assert dockerignore_excludes(patterns, ".venv/bin/python")
    assert not dockerignore_excludes(patterns, "src/tripbook/main.py")
    assert dockerignore_excludes(patterns, "src/tripbook/__pycache__/main.cpython-311.pyc")


# ---- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_builds_runtime_by_default(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    assert dockerfile.final.name == "runtime"


def test_base_images_are_pinned_python_311_slim(dockerfile: Dockerfile) -> None:
    names = {stage.name for stage in dockerfile.stages}
    external = {stage.base for stage in dockerfile.stages if stage.base not in names}
    assert external, "every stage derives from another stage?"
    for image in external:
        assert "$" not in image, f"unresolved build argument in FROM {image}"
        assert image_is_pinned(image), f"FROM {image} is not pinned to a tag"
        assert re.fullmatch(r"python:3\.11\.\d+-slim(?:-\w+)?", image), image


def test_final_stage_runs_as_a_fixed_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None, "the final image runs as root"
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    manifests_uid = 10001
    assert int(uid) == manifests_uid, "k8s/ pods run as 10001: keep the two in step"


def test_final_stage_copies_the_venv_and_installs_nothing(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    venvs = [(src, dst) for src, paths, dst in copies(final) if src and "/opt/venv" in paths]
    assert venvs, "the final stage takes its virtualenv from a builder stage"
    builder = dockerfile.stage(venvs[0][0])
    assert any("pip install" in run for run in builder.runs())
    assert not any("[local]" in run for run in builder.runs()), "no sandbox extras in prod"
    assert not any("pip install" in run for run in final.runs())
    assert "/opt/venv/bin" in final.env()["PATH"]


def test_no_pip_cache_in_any_layer(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        cache_off = stage.env().get("PIP_NO_CACHE_DIR") in ("1", "true", "on", "yes")
        for run in stage.runs():
            if "pip install" in run:
                assert "--no-cache-dir" in run or cache_off, f"{stage.name}: {run}"


def test_final_stage_has_no_build_tools_or_apt_lists(dockerfile: Dockerfile) -> None:
    for run in dockerfile.final.runs():
        if "apt-get install" in run:
            assert "rm -rf /var/lib/apt/lists" in run, run
            assert not [tool for tool in BUILD_TOOLS if re.search(rf"\s{re.escape(tool)}\b", run)]


def test_python_runtime_environment(dockerfile: Dockerfile) -> None:
    env = dockerfile.final.env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    # Set for the API alone (k8s, compose): worker and beat must not see it.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env


def test_final_image_holds_what_every_role_needs(dockerfile: Dockerfile) -> None:
    copied = {path for src, paths, _ in copies(dockerfile.final) if src is None for path in paths}
    assert {"alembic.ini", "migrations", "deploy/gunicorn.conf.py"} <= copied
    assert not [p for p in copied if p.startswith("deploy/sandbox")], "sandboxes stay out"
    assert json.loads(dockerfile.final.last("CMD") or "null") == [
        "gunicorn",
        "-c",
        "deploy/gunicorn.conf.py",
    ]
    assert dockerfile.final.last("EXPOSE") == "8000"


def test_sandbox_target_has_the_local_extra(dockerfile: Dockerfile) -> None:
    sandbox = dockerfile.stage("sandbox")
    venvs = [src for src, paths, _ in copies(sandbox) if src and "/opt/venv" in paths]
    assert venvs
    assert any("[local]" in run for run in dockerfile.stage(venvs[0]).runs())
    assert [paths for src, paths, _ in copies(sandbox) if src is None] == [["deploy/sandbox"]]
    assert (sandbox.last("USER") or "").split(":")[0] == "10001"


def test_copied_files_exist_and_reach_the_build_context(
    dockerfile: Dockerfile, ignore_patterns: list[str]
) -> None:
    sources = {
        path
        for stage in dockerfile.stages
        for src, paths, _ in copies(stage)
        if src is None
        for path in paths
    }
    missing = sorted(path for path in sources if not (REPO / path).exists())
    assert not missing, f"COPY sources not in the repository: {missing}"
    ignored = sorted(path for path in sources if dockerignore_excludes(ignore_patterns, path))
    assert not ignored, f"COPY sources excluded by .dockerignore: {ignored}"


@pytest.mark.parametrize("path", [".venv/bin/python", ".git/HEAD", ".env", "tests/ops", "k8s"])
def test_dockerignore_keeps_local_state_out(ignore_patterns: list[str], path: str) -> None:
    assert dockerignore_excludes(ignore_patterns, path)


# ---- docker-compose.yml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _run_once(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_compose_has_the_whole_system(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "redis", *APP_ROLES, *SANDBOXES}


def test_the_broker_keeps_its_tasks_across_a_restart(services: dict[str, dict[str, Any]]) -> None:
    """Redis is the broker: its append-only file, on a volume, survives a restart."""
    command = services["redis"]["command"]
    assert command == ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec"]
    assert services["redis"]["volumes"] == ["redisdata:/data"]


def test_every_service_is_healthchecked_or_runs_once(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if _run_once(service):
            # The image's HEALTHCHECK (for the API) means nothing for a one-off command.
            assert service["healthcheck"] == {"disable": True}, name
        else:
            assert service["healthcheck"]["test"], name
            assert service.get("restart") == "unless-stopped", name


def test_depends_on_conditions_fit_their_targets(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            if _run_once(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}"
                assert "healthcheck" in services[target], f"{name} -> {target}"


def test_app_waits_for_its_services_and_migrations(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for role in ("api", "worker", "beat"):
        depends_on = services[role]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
        assert depends_on["redis"] == {"condition": "service_healthy"}
    for role in ("api", "worker"):
        assert services[role]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for sandbox in SANDBOXES:
        assert services["worker"]["depends_on"][sandbox] == {"condition": "service_healthy"}


def test_app_roles_share_one_image_build(
    services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    builds = [services[role]["build"] for role in APP_ROLES]
    assert all(build == builds[0] for build in builds)
    assert len({services[role]["image"] for role in APP_ROLES}) == 1
    build = builds[0]
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["target"] == dockerfile.final.name
    for sandbox in SANDBOXES:
        assert services[sandbox]["build"] == {**build, "target": "sandbox"}


def test_compose_commands_run_each_role(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["tripbook", "migrate"]
    assert services["api"]["command"] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    worker = services["worker"]["command"]
    assert worker[:4] == ["celery", "-A", "workers.app", "worker"]
    assert worker[worker.index("-Q") + 1] == "payments,email,maintenance,celery"
    assert "--concurrency" in worker
    beat = services["beat"]["command"]
    assert beat[:4] == ["celery", "-A", "workers.app", "beat"]
    assert beat[beat.index("--schedule") + 1].startswith(f"{TMP_DIR}/")
    assert services["payment-gateway"]["command"][:2] == [
        "python",
        "deploy/sandbox/payment_gateway.py",
    ]
    assert services["smtp-sink"]["command"][:2] == ["python", "deploy/sandbox/smtp_sink.py"]


def test_compose_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert image_is_pinned(service["image"]), f"{name}: {service['image']}"


def test_compose_app_matches_the_cluster_hardening(services: dict[str, dict[str, Any]]) -> None:
    for role in APP_ROLES:
        assert services[role]["read_only"] is True, role
        assert any(t.startswith(f"{TMP_DIR}:") for t in services[role]["tmpfs"]), role
    api = services["api"]
    metrics_dir = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert any(t.startswith(f"{metrics_dir}:") for t in api["tmpfs"])
    for role in ("worker", "beat", "migrate"):
        assert "PROMETHEUS_MULTIPROC_DIR" not in services[role]["environment"], role


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations in seconds: {duration!r}"
    return int(match[1])


def test_compose_stop_grace_covers_graceful_shutdown(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    graceful = int(api["environment"]["GUNICORN_GRACEFUL_TIMEOUT"])
    assert _seconds(api["stop_grace_period"]) > graceful
    assert _seconds(services["worker"]["stop_grace_period"]) >= 120


def test_compose_variables_are_settings(services: dict[str, dict[str, Any]]) -> None:
    from tripbook.settings import Settings

    known = {f"TRIPBOOK_{name.upper()}" for name in Settings.model_fields}
    used = {
        key
        for service in services.values()
        for key in service.get("environment", {})
        if key.startswith("TRIPBOOK_")
    }
    assert {"TRIPBOOK_DATABASE_URL", "TRIPBOOK_REDIS_URL", "TRIPBOOK_BROKER_URL"} <= used
    assert used <= known, sorted(used - known)


def test_compose_environment_is_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tripbook.settings import Settings

    for role in APP_ROLES:
        for name in [n for n in os.environ if n.startswith("TRIPBOOK_")]:
            monkeypatch.delenv(name)
        for name, value in services[role]["environment"].items():
            monkeypatch.setenv(name, value)
        assert Settings(_env_file=None).env == "development"


def test_compose_points_the_app_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    env = services["api"]["environment"]
    assert "@postgres:5432/" in env["TRIPBOOK_DATABASE_URL"]
    assert env["TRIPBOOK_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["TRIPBOOK_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["TRIPBOOK_PAYMENT_GATEWAY_URL"] == "http://payment-gateway:8090"
    assert (env["TRIPBOOK_SMTP_HOST"], env["TRIPBOOK_SMTP_PORT"]) == ("smtp-sink", "8025")
    assert env["TRIPBOOK_ENV"] != "production", "compose uses a throwaway JWT secret"
