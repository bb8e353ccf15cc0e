"""Security settings read from the environment: lists as JSON or comma-separated."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
from pydantic import ValidationError

from movietickets.app import create_app
from movietickets.daraja import wire
from movietickets.daraja.setup import daraja_config
from movietickets.settings import Settings

NETWORKS = [ip_network("196.201.214.0/24"), ip_network("196.201.213.114/32")]


@pytest.mark.parametrize(
    "value",
    [
        '["196.201.214.0/24", "196.201.213.114"]',
        "196.201.214.0/24,196.201.213.114",
        " 196.201.214.0/24 , 196.201.213.114 , ",
    ],
)
def test_network_lists_as_json_or_commas(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MPESA_CALLBACK_ALLOWED_IPS", value)
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    settings = Settings(_env_file=None)
    assert settings.mpesa_callback_allowed_ips == NETWORKS
    assert settings.trusted_proxies == NETWORKS


def test_network_lists_default_to_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    settings = Settings(_env_file=None)
    assert settings.mpesa_callback_allowed_ips == []
    assert settings.trusted_proxies == []


@pytest.mark.parametrize("value", ["not-an-address", "196.201.214.200/24", '["10.0.0.0/8"'])
def test_bad_networks_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(_env_file=None)


@pytest.mark.parametrize("size", [1023, 1024 * 1024 + 1])
def test_body_size_limit_stays_within_what_the_callback_log_stores(size: int) -> None:
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(_env_file=None, max_body_bytes=size)


def test_rate_limit_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.rate_limit_enabled is True
    assert (settings.rate_limit_writes, settings.rate_limit_phone) == ("20/minute", "1/2 minutes")
    assert settings.rate_limit_refused_callbacks == "10/minute"
    assert (settings.rate_limit_sign_in_username, settings.rate_limit_sign_in_address) == (
        "10/15 minutes",
        "20/15 minutes",
    )
    assert settings.redis_url is None


def test_seat_hold_bounds_default_and_are_at_least_one_order() -> None:
    settings = Settings(_env_file=None)
    assert (settings.max_held_seats_per_phone, settings.max_held_seats_per_address) == (20, 50)
    assert Settings(_env_file=None, max_held_seats_per_address=0).max_held_seats_per_address == 0
    for name in ("max_held_seats_per_phone", "max_held_seats_per_address"):
        below_one_order: dict[str, Any] = {name: 9}
        with pytest.raises(ValidationError, match=f"{name.upper()} must be 0 or at least"):
            Settings(_env_file=None, max_tickets_per_order=10, **below_one_order)


@pytest.mark.parametrize("rate", ["20/fortnight", "twenty a minute", "1/second;5/minute", ""])
def test_bad_rates_are_refused(rate: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_writes"):
        Settings(_env_file=None, rate_limit_writes=rate)


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379", "memory://"])
def test_redis_url_must_be_redis(url: str) -> None:
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(_env_file=None, redis_url=url)


@pytest.mark.parametrize(
    "value",
    [
        '["https://tickets.example.com", "http://localhost:5173"]',
        "https://tickets.example.com/, http://localhost:5173",
    ],
)
def test_cors_origins_as_json_or_commas(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CORS_ORIGINS", value)
    settings = Settings(_env_file=None)
    assert settings.cors_origins == ["https://tickets.example.com", "http://localhost:5173"]


def test_cors_origins_default_to_none() -> None:
    assert Settings(_env_file=None).cors_origins == []


@pytest.mark.parametrize(
    "origin", ["tickets.example.com", "https://tickets.example.com/app", "ftp://x.example"]
)
def test_bad_cors_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(_env_file=None, cors_origins=[origin])


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MPESA_TRANSACTION_DESC", "Cinema tickets", "at most 13 characters"),
        ("MPESA_TRANSACTION_TYPE", "CustomerPayBill", "MPESA_TRANSACTION_TYPE"),
    ],
)
def test_settings_daraja_would_refuse_stop_the_app_from_being_built(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        create_app(Settings(_env_file=None, environment="test"))


def test_daraja_defaults_are_the_sandbox_pair() -> None:
    config = daraja_config(Settings(_env_file=None))
    assert (config.shortcode, config.passkey) == (wire.SANDBOX_SHORTCODE, wire.SANDBOX_PASSKEY)
    assert config.transaction_type == wire.PAYBILL
    till = daraja_config(
        Settings(_env_file=None, mpesa_transaction_type=wire.TILL, mpesa_shortcode="600000")
    )
    assert (till.transaction_type, till.shortcode) == (wire.TILL, "600000")
