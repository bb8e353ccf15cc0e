"""Every setting of the service, read from the environment and `.env` (see `.env.example`)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import limits
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _list_from_env(value: Any) -> Any:
    """Lists from the environment: JSON (`["a", "b"]`) or comma-separated (`a, b`)."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)
    return [item.strip() for item in value.split(",") if item.strip()]


def _one_rate_limit(value: str) -> str:
    """A rate in the `limits` notation: `20/minute`, `1/2 minutes`, `100 per hour`."""
    if len(limits.parse_many(value)) != 1:
        raise ValueError("give one rate, e.g. 20/minute")
    return value


def _origin(value: str) -> str:
    """A browser origin, `https://tickets.example.com` (or `*`: any site)."""
    value = value.rstrip("/")
    parts = urlsplit(value)
    if value != "*" and (
        parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query
    ):
        raise ValueError(f"{value!r} is not an origin such as https://tickets.example.com")
    return value


# NoDecode: pydantic-settings would insist on JSON; `_list_from_env` takes both forms.
NetworkList = Annotated[list[IPvAnyNetwork], NoDecode, BeforeValidator(_list_from_env)]
OriginList = Annotated[
    list[Annotated[str, AfterValidator(_origin)]], NoDecode, BeforeValidator(_list_from_env)
]
RateLimit = Annotated[str, AfterValidator(_one_rate_limit)]


Environment = Literal["development", "test", "production"]

MIN_SECRET_LENGTH = 32


class UnsafeSettings(ValueError):
    """Settings the service refuses to serve with (see `Settings.check_can_serve`)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Production unless asked otherwise: development (`make run` sets it) creates a
    # well-known admin and makes up its secrets.
    environment: Environment = "production"
    log_level: str = "INFO"

    # Where `movietickets serve` listens (also the base of the built-in simulator's URLs).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Longer than a load balancer's idle timeout (60 s on most), so that the balancer, not
    # the service, closes idle connections and never reuses one the service just closed.
    keep_alive_seconds: int = Field(default=75, ge=1)
    # Slow and oversized requests (server.py). A request's line and headers must arrive within
    # HEADER_READ_TIMEOUT_SECONDS of its first byte and its body within BODY_READ_TIMEOUT_SECONDS
    # of the headers (else 408); the line and headers are at most MAX_HEADER_BYTES (else 431).
    # Over MAX_CONNECTIONS open connections per worker, requests get 503.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    max_connections: int = Field(default=1000, ge=1)
    # The URL clients and Safaricom reach this service at; defaults to http://host:port.
    public_base_url: str | None = None

    database_url: str = "sqlite+aiosqlite:///./movietickets.db"
    # Per process. Seat holds and push records are batched, so the hot paths need few
    # connections, and each one costs about 250 KB of the worker's memory.
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_echo: bool = False

    # Adds a few sample movies on first start with an empty database (never in production).
    seed_sample_movies: bool = True

    # At most 1 MiB: every body accepted is stored whole in the callback log (16 MiB a body on
    # MySQL) and stays well within MySQL's max_allowed_packet.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)

    # Ticket purchase rules.
    seat_hold_seconds: int = Field(default=600, ge=60)
    max_tickets_per_order: int = Field(default=10, ge=1, le=1000)
    # Against seat hoarding: most unpaid (Pending) seats of one showing that one phone number,
    # and one client address (an IPv6 client: its /64), may hold at once; 0 turns a bound off.
    max_held_seats_per_phone: int = Field(default=20, ge=0)
    max_held_seats_per_address: int = Field(default=50, ge=0)

    # Admin sign-in: JWTs signed with this key (HS256). Required in production and with real
    # Daraja credentials; elsewhere, unset means a random key generated once per database.
    jwt_secret_key: SecretStr | None = None
    jwt_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Created on start when the database has no admin yet.
    first_admin_username: str | None = None
    first_admin_password: SecretStr | None = None

    # Reconciliation of pushes that got no callback: first STK query after this many seconds,
    # then backing off (doubling, at most the maximum), giving up after the last.
    reconcile_first_query_seconds: float = Field(default=75.0, ge=0)
    reconcile_retry_seconds: float = Field(default=15.0, gt=0)
    reconcile_max_interval_seconds: float = Field(default=120.0, gt=0)
    # Must stay below SEAT_HOLD_SECONDS, so that seats are released only after giving up.
    reconcile_give_up_seconds: float = Field(default=300.0, gt=0)
    reconcile_poll_seconds: float = Field(default=5.0, gt=0)
    reconcile_batch_size: int = Field(default=20, ge=1)
    # Run the reconciler inside the service (it is safe to run in every instance at once).
    reconcile_in_service: bool = True

    # Where callbacks and accepted pushes are kept, fsync'd, while the database cannot take
    # them (one file per process; any process on this directory replays what it finds).
    # Relative paths are from the working directory. Keep it on a persistent disk.
    journal_dir: Path = Path("movietickets-journal")
    # How often each process looks for journal entries to replay, and the longest wait
    # between tries while the database stays away (the wait doubles up to it).
    journal_replay_seconds: float = Field(default=1.0, gt=0)
    journal_replay_max_seconds: float = Field(default=30.0, gt=0)
    # An accepted push the database has not recorded within this time is written to the
    # journal too, and the buyer answered (the database still records it when it can).
    journal_push_after_seconds: float = Field(default=2.0, gt=0)

    # Daraja (M-Pesa Express). With no consumer key/secret the built-in simulator is used.
    mpesa_consumer_key: SecretStr | None = None
    mpesa_consumer_secret: SecretStr | None = None
    mpesa_base_url: str | None = None
    # Unset: Safaricom's public sandbox pair. Daraja's own rules on these values (transaction
    # types, lengths) are checked by `daraja.setup.check_settings` when the app is built.
    mpesa_shortcode: str | None = None
    mpesa_passkey: SecretStr | None = None
    mpesa_transaction_type: str | None = None  # unset: paybill
    mpesa_party_b: str | None = None
    mpesa_account_reference_prefix: str = Field(default="TICKET", pattern=r"^[A-Za-z0-9]{0,6}$")
    mpesa_transaction_desc: str = Field(default="Movie ticket", min_length=1)
    mpesa_callback_url: str | None = None
    mpesa_callback_token: SecretStr | None = None
    # Networks Safaricom's callbacks may come from; empty allows any address.
    mpesa_callback_allowed_ips: NetworkList = Field(default_factory=list)
    mpesa_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    mpesa_read_timeout_seconds: float = Field(default=30.0, gt=0)

    # Proxies (networks) whose X-Forwarded-For is believed; empty: the socket peer is the client.
    trusted_proxies: NetworkList = Field(default_factory=list)
    # Browser origins allowed to call the API (CORS); empty: no CORS headers at all.
    cors_origins: OriginList = Field(default_factory=list)

    # Rate limits (`limits` notation): writes per client address, make-payment per phone
    # number and amount. Counted in memory, or in Redis (shared by every instance) if set.
    rate_limit_enabled: bool = True
    rate_limit_writes: RateLimit = "20/minute"
    rate_limit_phone: RateLimit = "1/2 minutes"
    # Refused callbacks (wrong or missing secret, address not allowed) per client address:
    # each is stored (its first bytes) and logged, so a flood must not fill the database.
    # Callbacks with the right secret are never limited.
    rate_limit_refused_callbacks: RateLimit = "10/minute"
    # Admin sign-in attempts that fail, per username and per client address: counted in the
    # database (exact across workers and instances, with or without Redis).
    rate_limit_sign_in_username: RateLimit = "10/15 minutes"
    rate_limit_sign_in_address: RateLimit = "20/15 minutes"
    redis_url: SecretStr | None = None  # may hold a password
    rate_limit_key_prefix: str = Field(default="movietickets", min_length=1)

    # Built-in Daraja simulator (development and tests).
    simulator_enabled: bool | None = None
    simulator_callback_delay_seconds: float = Field(default=3.0, ge=0)
    # How long the simulator takes to answer a push (real Daraja: 1-3 s); 0 answers at once.
    simulator_push_delay_seconds: float = Field(default=0.0, ge=0)
    # Signs the simulator's tokens and checkout ids; shared so that every worker agrees.
    simulator_signing_key: SecretStr = SecretStr("movietickets-simulator")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from movietickets.db.urls import check_database_url

        return check_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _production_defaults(self) -> Settings:
        if not self.use_simulator and (
            self.mpesa_consumer_key is None or self.mpesa_consumer_secret is None
        ):
            raise ValueError(
                "MPESA_CONSUMER_KEY and MPESA_CONSUMER_SECRET are required without the simulator"
            )
        if self.reconcile_give_up_seconds >= self.seat_hold_seconds:
            raise ValueError("RECONCILE_GIVE_UP_SECONDS must be below SEAT_HOLD_SECONDS")
        if (self.first_admin_username is None) != (self.first_admin_password is None):
            raise ValueError("set FIRST_ADMIN_USERNAME and FIRST_ADMIN_PASSWORD together")
        for name in ("max_held_seats_per_phone", "max_held_seats_per_address"):
            bound = getattr(self, name)
            if bound and bound < self.max_tickets_per_order:
                raise ValueError(f"{name.upper()} must be 0 or at least MAX_TICKETS_PER_ORDER")
        if self.environment == "production":
            self.seed_sample_movies = False
        return self

    def serving_problems(self) -> list[str]:
        """Why the service must not serve with these settings (none: it may)."""
        key = None if self.jwt_secret_key is None else self.jwt_secret_key.get_secret_value()
        weak_key = key is None or len(key) < MIN_SECRET_LENGTH
        problems = []
        if weak_key and (self.environment == "production" or not self.use_simulator):
            # A key made up per database is for trying the service out, never for real money.
            problems.append(
                f"JWT_SECRET_KEY must be set to a random value of {MIN_SECRET_LENGTH}+ characters"
                + ("" if self.environment == "production" else " to use real Daraja credentials")
            )
        if self.environment == "production":
            if self.mpesa_callback_token is None:
                problems.append("MPESA_CALLBACK_TOKEN must be set")
            if self.use_simulator:
                problems.append(
                    "the Daraja simulator cannot be used: set MPESA_CONSUMER_KEY and "
                    "MPESA_CONSUMER_SECRET"
                )
        return problems

    def check_can_serve(self) -> None:
        """Raises UnsafeSettings, naming every problem, unless the service may serve.

        Checked when the app is built, not when settings are read: `migrate` and
        `create-admin` need nothing but DATABASE_URL.
        """
        problems = self.serving_problems()
        if problems:
            raise UnsafeSettings(f"refusing to start ({self.environment}): " + "; ".join(problems))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def callback_url(self) -> str:
        """The CallBackURL sent to Daraja, with the callback token when one is configured."""
        url = self.mpesa_callback_url or f"{self.base_url}/api/payment-callback"
        if self.mpesa_callback_token is None or "token=" in url:
            return url
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}token={quote(self.mpesa_callback_token.get_secret_value())}"

    @property
    def use_simulator(self) -> bool:
        if self.simulator_enabled is not None:
            return self.simulator_enabled
        return self.mpesa_consumer_key is None or self.mpesa_consumer_secret is None
