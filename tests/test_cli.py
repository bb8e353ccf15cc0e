"""`movietickets` on a machine nobody configured: production unless asked, no well-known admin
or key outside development, the first admin from FIRST_ADMIN_*, one line per failure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets import cli
from movietickets.app import create_app
from movietickets.auth.service import ALGORITHM, AUDIENCE
from movietickets.db.models import Admin, ServiceSecret
from movietickets.kit.clock import utcnow
from movietickets.settings import Settings, UnsafeSettings
from tests.conftest import loopback_app, make_settings

# The key the service used to sign development tokens with, published in its source.
PUBLISHED_DEVELOPMENT_KEY = "development-only-signing-key-do-not-use-in-production"
ROOT = Path(__file__).resolve().parents[1]


async def admins(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Admin.username).order_by(Admin.username)))


async def test_development_admin_is_created_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    development = settings.model_copy(update={"environment": "development"})
    assert await cli._ensure_first_admin(development) == "admin"
    assert await cli._ensure_first_admin(development) is None
    assert await admins(sessionmaker) == ["admin"]


@pytest.mark.parametrize("environment", ["test", "production"])
async def test_no_admin_is_made_up_outside_development(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], environment: str
) -> None:
    other = settings.model_copy(update={"environment": environment})
    assert await cli._ensure_first_admin(other) is None
    assert await admins(sessionmaker) == []


async def test_first_admin_comes_from_the_settings(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = settings.model_copy(
        update={
            "environment": "production",
            "first_admin_username": "operator",
            "first_admin_password": SecretStr("a long passphrase"),
        }
    )
    assert await cli._ensure_first_admin(first) == "operator"
    # Only when there is no admin yet: a later start changes nothing.
    again = first.model_copy(update={"first_admin_username": "someone-else"})
    assert await cli._ensure_first_admin(again) is None
    assert await admins(sessionmaker) == ["operator"]


def test_first_admin_needs_both_settings() -> None:
    with pytest.raises(ValueError, match="together"):
        Settings(_env_file=None, first_admin_username="operator")


def test_the_installed_command_defaults_to_production() -> None:
    settings = Settings(_env_file=None)
    assert settings.environment == "production"
    with pytest.raises(UnsafeSettings) as refused:
        create_app(settings)
    assert "JWT_SECRET_KEY" in str(refused.value)


def test_real_daraja_credentials_need_a_real_signing_key() -> None:
    real = Settings(
        _env_file=None,
        environment="development",
        mpesa_consumer_key=SecretStr("key"),
        mpesa_consumer_secret=SecretStr("secret"),
    )
    with pytest.raises(UnsafeSettings, match="JWT_SECRET_KEY"):
        real.check_can_serve()
    real.model_copy(update={"jwt_secret_key": SecretStr("k" * 40)}).check_can_serve()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "LOG_LEVEL": "WARNING", **env}
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "movietickets.cli", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_serve_refuses_an_unconfigured_machine_in_one_line(tmp_path: Path) -> None:
    refused = run_cli("serve", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "refusing to start (production)" in lines[0]
    assert "JWT_SECRET_KEY" in lines[0]
    assert "MPESA_CALLBACK_TOKEN" in lines[0]
    assert not (tmp_path / "db.sqlite").exists()  # refused before migrating anything


def test_make_run_asks_for_development() -> None:
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"],  # noqa: S607 (make from PATH)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ENVIRONMENT=development" in dry_run.stdout.splitlines()[-1]


async def test_development_signs_with_a_random_key_kept_per_database(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    development = settings.model_copy(update={"environment": "development", "jwt_secret_key": None})
    now = utcnow()
    claims = {"sub": "someone", "aud": AUDIENCE, "iat": now, "exp": now.replace(year=now.year + 1)}
    published = jwt.encode(claims, PUBLISHED_DEVELOPMENT_KEY, algorithm=ALGORITHM)
    async with sessionmaker() as session, session.begin():
        session.add(Admin(username="someone", password_hash="x"))
    keys = []
    # Two processes' worth of apps (and a restart) on one database agree on the key.
    for _ in range(2):
        async with loopback_app(development) as app:
            resources = app.state.resources
            key = resources.settings.jwt_secret_key
            assert key is not None
            keys.append(key.get_secret_value())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                forged = await client.get(
                    "/api/admin/sales", headers={"Authorization": f"Bearer {published}"}
                )
                assert forged.status_code == 401
    assert keys[0] == keys[1]
    assert len(keys[0]) >= 32
    assert PUBLISHED_DEVELOPMENT_KEY not in keys


async def test_two_apps_starting_at_once_make_one_key(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    development = settings.model_copy(update={"environment": "development", "jwt_secret_key": None})

    async def start() -> str:
        async with loopback_app(development) as app:
            key = app.state.resources.settings.jwt_secret_key
            assert key is not None
            return str(key.get_secret_value())

    first, second = await asyncio.gather(start(), start())
    assert first == second
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ServiceSecret)) == 1


def test_development_gets_a_callback_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded first, so that the variable the command sets is removed afterwards.
    monkeypatch.setenv("MPESA_CALLBACK_TOKEN", "placeholder")
    monkeypatch.delenv("MPESA_CALLBACK_TOKEN")
    development = make_settings("sqlite+aiosqlite:///:memory:", environment="development")
    with monkeypatch.context() as patched:
        patched.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
        patched.setenv("ENVIRONMENT", "development")
        secured = cli._development_callback_token(development)
        assert secured.mpesa_callback_token is not None
        assert len(secured.mpesa_callback_token.get_secret_value()) >= 32
    configured = make_settings("sqlite+aiosqlite:///:memory:", environment="test")
    assert cli._development_callback_token(configured) is configured
