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


def test_dockerfile_installs_the_server_extra_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install '.[server]'" in text
    assert 'CMD ["cuefast", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "HEALTHCHECK" in text and "/health" in text
