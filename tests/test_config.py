"""Settings from CUEFAST_* variables: defaults, parsing, typos stop start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cuefast.config import Settings, load_settings
from cuefast.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    s = load_settings({})
    assert s.redis_url == "" and s.database_url == ""
    assert s.allow_private_callbacks is False and s.allow_register is True
    assert s.default_cue_limit == 1_000_000
    assert s.default_monthly_execution_limit == 1_000_000_000
    assert s.default_rate_limit_per_minute == 60_000
    assert s.partitions == 0 and s.webhook_timeout_seconds == 30 and s.worker_lease_seconds == 900


def test_parsing() -> None:
    s = load_settings(
        {
            "CUEFAST_PARTITIONS": "1",
            "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "TRUE",
            "CUEFAST_ENFORCE_QUOTAS": "0",
            "CUEFAST_DEFAULT_CUE_LIMIT": "10",
            "CUEFAST_SNAPSHOT_INTERVAL": "2.5",
            "CUEFAST_REDIS_URL": "redis://h:1/0",
            "PATH": "/bin",
            "CUEFAST_TEST_REDIS_URL": "ignored",
        }
    )
    assert s.partitions == 1 and s.allow_private_callbacks is True and s.enforce_quotas is False
    assert s.default_cue_limit == 10 and s.snapshot_interval == 2.5 and s.redis_url == "redis://h:1/0"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUEFAST_REDIS_ULR": "x"}, "Unknown setting CUEFAST_REDIS_ULR (did you mean CUEFAST_REDIS_URL?)"),
        ({"CUEFAST_PARTITIONS": "many"}, "CUEFAST_PARTITIONS='many' is not an integer"),
        ({"CUEFAST_PARTITIONS": "257"}, "CUEFAST_PARTITIONS must be between 1 and 256"),
        ({"CUEFAST_API_WORKERS": "0"}, "CUEFAST_API_WORKERS must be between 1 and 64"),
        ({"CUEFAST_API_WORKERS": "65"}, "CUEFAST_API_WORKERS must be between 1 and 64"),
        ({"CUEFAST_ALLOW_REGISTER": "perhaps"}, "is not a boolean"),
        ({"CUEFAST_WORKER_LEASE_SECONDS": "0"}, "CUEFAST_WORKER_LEASE_SECONDS must be at least 1"),
        ({"CUEFAST_KEY_PREFIX": "a{b"}, "CUEFAST_KEY_PREFIX"),
        ({"CUEFAST_LOG_LEVEL": "LOUD"}, "CUEFAST_LOG_LEVEL"),
        ({"CUEFAST_REDIS_CLUSTER": "true"}, "CUEFAST_REDIS_CLUSTER=true needs CUEFAST_REDIS_URL"),
        (
            {"CUEFAST_REDIS_CLUSTER": "true", "CUEFAST_REDIS_URL": "unix:///tmp/r.sock"},
            "CUEFAST_REDIS_CLUSTER=true needs a redis:// or rediss:// URL",
        ),
        (
            {"CUEFAST_REDIS_URL": "redis://h:6379", "CUEFAST_REDIS_TLS_CA": "/ca.pem"},
            "settings need a rediss:// CUEFAST_REDIS_URL",
        ),
        (
            {"CUEFAST_REDIS_URL": "rediss://h:6379", "CUEFAST_REDIS_TLS_CERT": "/c.pem"},
            "CUEFAST_REDIS_TLS_CERT and CUEFAST_REDIS_TLS_KEY go together",
        ),
        ({"CUEFAST_REDIS_WAIT_REPLICAS": "-1"}, "CUEFAST_REDIS_WAIT_REPLICAS must not be negative"),
        ({"CUEFAST_REDIS_WAIT_TIMEOUT_MS": "0"}, "CUEFAST_REDIS_WAIT_TIMEOUT_MS must be between 1 and 30000"),
        ({"CUEFAST_REDIS_WAIT_TIMEOUT_MS": "30001"}, "CUEFAST_REDIS_WAIT_TIMEOUT_MS must be between"),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
    ):
        load_settings(env)


def test_cli_stops_on_a_misspelled_variable() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cuefast", "serve"],
        env={"CUEFAST_PARTITONS": "4", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert "Unknown setting CUEFAST_PARTITONS (did you mean CUEFAST_PARTITIONS?)" in res.stderr
    assert "Traceback" not in res.stderr
