"""The container deployment, checked without a Docker engine: docker-compose.yml, .env.example,
Dockerfile and .dockerignore are read as files; `docker-compose config -q` runs when the
binary is installed (it needs no engine), and must run in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
IN_CI = os.environ.get("CI", "").lower() == "true"

# The configuration table of the outside contract (shared/CONTRACT.md). The deployment may use
# only these names: anything else would be silently ignored by the settings.
CONTRACT_SETTINGS = frozenset(
    {
        "NURTURE_DATABASE_URL",
        "NURTURE_BROKER_URL",
        "NURTURE_MAIL_URL",
        "NURTURE_BASE_URL",
        "NURTURE_SECRET_KEY",
        "NURTURE_ENV",
        "NURTURE_DKIM_SELECTOR",
        "NURTURE_DKIM_PRIVATE_KEY",
        "NURTURE_TRACK_CLICKS",
        "NURTURE_TRACK_OPENS",
        "NURTURE_BOOKING_WEBHOOK_KEY",
        # what comes back (issue 11)
        "NURTURE_BOUNCE_ADDRESS",
        "NURTURE_INBOX_URL",
        "NURTURE_MAIL_WEBHOOK_SECRET",
        "NURTURE_PROXY_HOPS",
        "NURTURE_EVENTS_URL",
        "NURTURE_EVENTS_SECRET",
        "NURTURE_RETENTION_DAYS",
        # The relay's limits (issue 10).
        "NURTURE_SEND_RATE",
        "NURTURE_SEND_DAILY_LIMIT",
        # Personal data at rest, and how long an unconfirmed signup is kept (issue 18).
        "NURTURE_DATA_KEY",
        "NURTURE_DATA_KEY_PREVIOUS",
        "NURTURE_PENDING_DAYS",
        # Provider webhooks one by one, SES by its topic (issue 19).
        "NURTURE_SES_TOPIC_ARN",
        "NURTURE_MAIL_WEBHOOK_PROVIDERS",
        # The practice's zone, for times people are shown (issue 21).
        "NURTURE_TIMEZONE",
    }
)
NURTURE_ROLES = ("migrate", "web", "worker", "beat")
NAME = re.compile(r"\bNURTURE_[A-Z0-9_]+")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command_of(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def healthcheck_of(service: dict[str, Any]) -> str:
    check = service.get("healthcheck")
    assert check, "no healthcheck"
    test = check["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def test_services_present(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "redis", "mailpit", *NURTURE_ROLES, "flower"}
    assert expected <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert services["flower"].get("profiles") == ["monitoring"]
    for name in ("postgres", "redis", "mailpit", *NURTURE_ROLES):
        assert "profiles" not in services[name], f"{name} must start by default"


def test_postgres_keeps_its_data_in_a_volume(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["postgres"]["volumes"]
    named = [v.split(":", 1)[0] for v in volumes if v.endswith(":/var/lib/postgresql/data")]
    assert named and named[0] in (compose.get("volumes") or {})


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in healthcheck_of(services["postgres"])
    assert "redis-cli ping" in healthcheck_of(services["redis"])
    assert "readyz" in healthcheck_of(services["mailpit"])
    web = healthcheck_of(services["web"])
    assert "urllib" in web and "/healthz" in web and "python" in web


def test_roles_run_the_contract_commands(services: dict[str, dict[str, Any]]) -> None:
    migrate = command_of(services["migrate"])
    upgrade, apply = "nurture db upgrade", "nurture sequences apply templates/sequences"
    assert upgrade in migrate and apply in migrate
    assert migrate.index(upgrade) < migrate.index(apply)
    assert "&&" in migrate, "apply must not run after a failed upgrade"
    assert services["migrate"].get("restart") == "no"
    assert command_of(services["web"]) == "nurture web --host 0.0.0.0 --port 8000"
    assert command_of(services["worker"]).startswith("nurture worker")
    assert command_of(services["beat"]) == "nurture beat"


def test_roles_wait_for_the_migration(services: dict[str, dict[str, Any]]) -> None:
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "migrate" not in services["migrate"]["depends_on"]


def test_roles_share_one_production_configuration(services: dict[str, dict[str, Any]]) -> None:
    for name in NURTURE_ROLES:
        svc = services[name]
        env_file = svc.get("env_file")
        assert env_file == ".env" or env_file == [".env"], name
        env = svc["environment"]
        assert env["NURTURE_ENV"] == "production", name
        # Required, not defaulted: compose refuses to start without a secret key.
        assert ":?" in env["NURTURE_SECRET_KEY"], name
        assert "mailpit:1025" in env["NURTURE_MAIL_URL"], name


def test_beat_runs_exactly_once(services: dict[str, dict[str, Any]]) -> None:
    beat = services["beat"]
    assert int(beat.get("scale", 1)) <= 1
    assert int((beat.get("deploy") or {}).get("replicas", 1)) <= 1


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"


def test_only_contract_settings_are_used() -> None:
    for path in (COMPOSE, ENV_EXAMPLE):
        used = set(NAME.findall(path.read_text(encoding="utf-8")))
        unknown = used - CONTRACT_SETTINGS
        assert not unknown, f"{path.name} uses names the contract does not have: {unknown}"


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in CONTRACT_SETTINGS:
        # Optional settings stay commented out: an empty value would count as set.
        assert re.search(rf"^(# )?{name}=", text, re.MULTILINE), f"{name} missing"
    values = env_example()
    assert values["NURTURE_SECRET_KEY"], "the secret key needs a placeholder"
    assert values["NURTURE_MAIL_URL"] == "smtp://mailpit:1025"
    for name, value in values.items():
        assert value, f"{name} is empty: comment it out instead"
    password = values["POSTGRES_PASSWORD"]
    assert f"nurture:{password}@postgres:5432/nurture" in values["NURTURE_DATABASE_URL"]


def test_env_example_is_valid_for_nurture() -> None:
    from nurture.config import load_settings
    from nurture.errors import ConfigError

    values = {k.removeprefix("NURTURE_").lower(): v for k, v in env_example().items()}
    values.pop("postgres_password")
    # The placeholder itself is published: production refuses it until it is replaced.
    with pytest.raises(ConfigError, match="NURTURE_SECRET_KEY"):
        load_settings(**values)
    values["secret_key"] = "9c1f4e7a2b8d3f6a0e5c7b9d1f3a5c7e"
    with pytest.raises(ConfigError, match="NURTURE_DATA_KEY is a published example key"):
        load_settings(**values)
    values["data_key"] = "kdBWw5f1y2G9oXn3tqD1F0CwV9tYh6Jc3mXzq8Rr4uE="
    settings = load_settings(**values)
    assert settings.env == "production"
    assert not settings.dkim_enabled
    assert settings.booking_webhook_key is None


def test_dockerfile_builds_a_slim_non_root_image() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert "[test]" not in text, "dev dependencies do not belong in the image"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for secret in (".env", "*.db", "outbox"):
        assert secret in ignored, f".dockerignore must keep {secret} out of the image"


def _compose_config(tmp_path: Path, env_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        if IN_CI:
            pytest.fail("docker-compose is not installed; CI must validate the compose file")
        pytest.skip("docker-compose is not installed")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env_text, encoding="utf-8")
    # Only .env may feed the interpolation, not whatever this shell exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NURTURE_", "POSTGRES_"))}
    return subprocess.run(
        [binary, "-f", "docker-compose.yml", "config", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_config_validates(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, ENV_EXAMPLE.read_text(encoding="utf-8"), "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    without = "\n".join(
        line for line in text.splitlines() if not line.startswith("NURTURE_SECRET_KEY=")
    )
    result = _compose_config(tmp_path, without, "-q")
    assert result.returncode != 0
    assert "NURTURE_SECRET_KEY" in result.stderr
