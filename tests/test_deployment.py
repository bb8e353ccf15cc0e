"""docker-compose.yml and the image's build context, read as Docker Compose and Docker would.

No Docker daemon is needed: the compose file's `${VAR:-default}` references are resolved as
Compose resolves them, and the app's environment is then given to the real command.
(tests/test_packaging.py builds from exactly the Dockerfile's build context and runs its
health check.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        current = environment.get(name)
        empty_counts = operator is not None and operator.startswith(":")
        if operator is not None and (current is None or (empty_counts and not current)):
            if operator.endswith("?"):
                raise ValueError(f"{name}: {argument}")
            return argument
        return current or ""

    return REFERENCE.sub(replace, value)


def app_environment(**environment: str) -> dict[str, str]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app = compose["services"]["app"]["environment"]
    return {name: interpolate(str(value), environment) for name, value in app.items()}


def run_in_app_environment(
    tmp_path: Path, args: list[str], **environment: str
) -> subprocess.CompletedProcess[str]:
    """A command with the app container's environment, in an empty directory (no .env)."""
    return subprocess.run(  # noqa: S603  (the service's own command)
        [sys.executable, *args],
        env={"PATH": os.environ["PATH"], **app_environment(**environment)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SHOW_SETTINGS = """
from movietickets.settings import Settings
settings = Settings()
print(settings.environment, f"simulator={settings.use_simulator}", settings.callback_url)
"""


def test_published_on_loopback_only() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_production_by_default_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    assert app_environment()["ENVIRONMENT"] == "production"
    started = run_in_app_environment(tmp_path, ["-m", "movietickets.cli", "serve"])
    assert started.returncode == 1
    assert started.stderr.splitlines() == [
        "movietickets serve: refusing to start (production): "
        "JWT_SECRET_KEY must be set to a random value of 32+ characters; "
        "MPESA_CALLBACK_TOKEN must be set; the Daraja simulator cannot be used: "
        "set MPESA_CONSUMER_KEY and MPESA_CONSUMER_SECRET"
    ]


def test_with_its_secrets_production_settings_are_complete(tmp_path: Path) -> None:
    checked = run_in_app_environment(
        tmp_path,
        ["-c", SHOW_SETTINGS],
        JWT_SECRET_KEY="k" * 48,
        MPESA_CALLBACK_TOKEN="a-long-random-callback-secret",
        MPESA_CONSUMER_KEY="key",
        MPESA_CONSUMER_SECRET="secret",
        PUBLIC_BASE_URL="https://tickets.example.com",
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.split() == [
        "production",
        "simulator=False",
        "https://tickets.example.com/api/payment-callback?token=a-long-random-callback-secret",
    ]


def test_documented_development_override_uses_the_simulator(tmp_path: Path) -> None:
    checked = run_in_app_environment(tmp_path, ["-c", SHOW_SETTINGS], ENVIRONMENT="development")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.split()[:2] == ["development", "simulator=True"]


def test_build_context_holds_what_the_image_needs_and_no_secrets() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # nothing but what is named
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert included == {"pyproject.toml", "setup.py", "README.md", "LICENSE", "src", "alembic"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {
        name
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for name in line.split()[1:-1]
    }
    assert copied == included
    assert "8000/healthz" not in dockerfile  # the health check reads PORT
