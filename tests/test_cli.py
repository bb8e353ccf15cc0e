"""The development conveniences of `movietickets serve`."""

from __future__ import annotations

import pytest

from movietickets import cli
from movietickets.settings import Settings
from tests.conftest import make_settings


async def test_development_admin_is_created_once(settings: Settings, engine: object) -> None:
    development = settings.model_copy(update={"environment": "development"})
    assert await cli._ensure_development_admin(development) is True
    assert await cli._ensure_development_admin(development) is False


def test_development_gets_a_callback_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded first, so that the variable the command sets is removed afterwards.
    monkeypatch.setenv("MPESA_CALLBACK_TOKEN", "placeholder")
    monkeypatch.delenv("MPESA_CALLBACK_TOKEN")
    development = make_settings("sqlite+aiosqlite:///:memory:", environment="development")
    with monkeypatch.context() as patched:
        patched.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
        secured = cli._development_callback_token(development)
        assert secured.mpesa_callback_token is not None
        assert len(secured.mpesa_callback_token.get_secret_value()) >= 32
    configured = make_settings("sqlite+aiosqlite:///:memory:", environment="test")
    assert cli._development_callback_token(configured) is configured
