"""docker-compose.yml and Dockerfile, checked by reading (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cuefast.__main__ import build_parser
from cuefast.config import FIELDS, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_images_and_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "postgres", "cuefast"}
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")
    for svc in services.values():
        assert "healthcheck" in svc
    cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in cmd and "--appendfsync everysec" in cmd
    assert "--maxmemory-policy noeviction" in cmd and "--hash-max-listpack-value 1024" in cmd
    deps = services["cuefast"]["depends_on"]
    assert deps == {"redis": {"condition": "service_healthy"}, "postgres": {"condition": "service_healthy"}}


def test_env_keys_are_real_settings_and_values_parse() -> None:
    env = _compose()["services"]["cuefast"]["environment"]
    known = {f"CUEFAST_{f.upper()}" for f in FIELDS}
    assert set(env) <= known, set(env) - known
    settings = load_settings({k: str(v) for k, v in env.items()})
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.database_url.startswith("postgresql://")
    assert settings.allow_private_callbacks is False


def test_postgres_credentials_match_the_dsn() -> None:
    services = _compose()["services"]
    pg = services["postgres"]["environment"]
    dsn = services["cuefast"]["environment"]["CUEFAST_DATABASE_URL"]
    assert (
        dsn
        == f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    )


def test_command_is_a_real_cli_invocation() -> None:
    cmd = _compose()["services"]["cuefast"]["command"]
    assert cmd[0] == "cuefast"
    args = build_parser().parse_args(cmd[1:])
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 8000


def test_dockerfile_installs_the_lock_and_serves() -> None:
    """The image installs the pinned, hashed lock (tests/test_packaging.py checks it covers the
    server extra), then cuefast without dependencies; its healthcheck is the api probe."""
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock ./" in text
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-deps ." in text
    assert 'CMD ["cuefast", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "HEALTHCHECK" in text and 'CMD ["cuefast", "health", "--role", "api"]' in text
    args = build_parser().parse_args(["health", "--role", "api"])
    assert args.command == "health" and args.role == "api"


# ---- docker-compose.cluster.yml: six Redis Cluster nodes, a one-shot join, the cuefast roles ----
def _cluster() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())


NODES = [f"redis-{i}" for i in range(1, 7)]
ROLES = {"api", "scheduler", "dispatcher", "snapshotter"}


def test_cluster_compose_services() -> None:
    services = _cluster()["services"]
    assert set(services) == {*NODES, "redis-cluster-init", "postgres", *ROLES}
    for name in NODES:
        node = services[name]
        assert node["image"].startswith("redis:7") and "healthcheck" in node
        cmd = " ".join(node["command"])
        assert "--cluster-enabled yes" in cmd and "--appendonly yes" in cmd
        assert "--maxmemory-policy noeviction" in cmd and "--hash-max-listpack-value 1024" in cmd
        # clients reach every node by its service name (CLUSTER SLOTS answers the hostname)
        assert f"--cluster-announce-hostname {name}" in cmd
        assert "--cluster-preferred-endpoint-type hostname" in cmd
        assert f"{name}-data:/data" in node["volumes"]
    assert services["postgres"]["image"].startswith("postgres:16")


def test_cluster_compose_join_runs_once_over_all_six() -> None:
    init = _cluster()["services"]["redis-cluster-init"]
    script = init["command"][-1]
    assert "redis-cli --cluster create " + " ".join(f"{n}:6379" for n in NODES) in script
    assert "--cluster-replicas 1 --cluster-yes" in script
    assert "cluster_state:ok ||" in script  # a restart of the stack does not re-create
    assert init["depends_on"] == {n: {"condition": "service_healthy"} for n in NODES}
    assert init["restart"] == "no"


def test_cluster_compose_roles_are_real_cli_invocations_over_the_cluster() -> None:
    services = _cluster()["services"]
    pg = services["postgres"]["environment"]
    known = {f"CUEFAST_{f.upper()}" for f in FIELDS}
    commands = set()
    for role in ROLES:
        svc = services[role]
        assert svc["command"][0] == "cuefast"
        args = build_parser().parse_args(svc["command"][1:])
        commands.add(args.command)
        env = svc["environment"]
        assert set(env) <= known, set(env) - known
        settings = load_settings({k: str(v) for k, v in env.items()})
        assert settings.redis_cluster is True and settings.redis_url == "redis://redis-1:6379"
        assert settings.database_url == (
            f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
        )
        assert svc["depends_on"] == {
            "redis-cluster-init": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
        }
    assert commands == ROLES
    api = build_parser().parse_args(services["api"]["command"][1:])
    assert api.host == "0.0.0.0" and api.port == 8000 and services["api"]["ports"] == ["8000:8000"]
    assert "healthcheck" in services["api"]
