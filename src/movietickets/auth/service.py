"""Admin accounts: argon2 password hashes, short-lived signed JWTs (HS256), and sign-in
attempts limited per username and per client address.

Sign-in limits. An attempt is counted before its password is checked, in the database, per
username (`RATE_LIMIT_SIGN_IN_USERNAME`) and per client address (`RATE_LIMIT_SIGN_IN_ADDRESS`,
an IPv6 client counting as its /64), in fixed windows; a successful sign-in takes its attempt
back, so what counts is failures. Over either limit the answer is 429 with Retry-After before
any password is checked, so even the right password is refused until the window passes, and
the answer is the same whether or not the username exists (unknown usernames are counted
too). The counts are shared by every worker and instance, with or without Redis: an upsert
per key locks its row, so parallel guesses are counted one after the other. Sign-ins are
rare, so the few statements this costs do not matter.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from limits import parse
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import SecretStr

from movietickets.auth.repository import (
    AdminRepository,
    ServiceSecretRepository,
    SignInCountRepository,
)
from movietickets.db.engine import AsyncSession, Sessionmaker, locked_transaction, read_transaction
from movietickets.db.models import Admin
from movietickets.errors import (
    Conflict,
    InvalidInput,
    RateLimited,
    StaleCredentials,
    Unauthorized,
)
from movietickets.kit.clock import utcnow
from movietickets.kit.net import client_key
from movietickets.settings import Settings

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
SIGNING_KEY_NAME = "jwt_signing_key"
AUDIENCE = "movietickets-admin"
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD_LENGTH = 12

# argon2id with OWASP's recommended cost (19 MiB, 2 passes): argon2's own default takes
# 64 MiB per hash, which a serving worker would keep as its peak memory.
password_hasher = PasswordHash((Argon2Hasher(memory_cost=19_456, time_cost=2, parallelism=1),))


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that both cases take the same time."""
    return password_hasher.hash("not-a-real-password")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


def _signing_key(settings: Settings) -> str:
    key = settings.jwt_secret_key
    if key is None:  # `with_signing_key` runs before anything signs or checks a token
        raise RuntimeError("no JWT signing key: settings were not passed through with_signing_key")
    return key.get_secret_value()


async def with_signing_key(sessionmaker: Sessionmaker, settings: Settings) -> Settings:
    """The settings with a signing key: JWT_SECRET_KEY, or else the random key stored in the
    database (made on first use), so that every worker and every restart agrees on it."""
    if settings.jwt_secret_key is not None:
        return settings
    async with locked_transaction(sessionmaker) as session:
        key = await ServiceSecretRepository(session).get_or_add(
            SIGNING_KEY_NAME, secrets.token_urlsafe(48)
        )
    logger.info("signing admin tokens with this database's own random key (JWT_SECRET_KEY unset)")
    return settings.model_copy(update={"jwt_secret_key": SecretStr(key)})


def issue_token(username: str, settings: Settings) -> IssuedToken:
    now = utcnow()
    lifetime = timedelta(minutes=settings.jwt_expire_minutes)
    claims = {"sub": username, "aud": AUDIENCE, "iat": now, "exp": now + lifetime}
    token = jwt.encode(claims, _signing_key(settings), algorithm=ALGORITHM)
    return IssuedToken(token, int(lifetime.total_seconds()))


def token_subject(token: str, settings: Settings) -> str:
    """The admin's username from a valid token; Unauthorized if expired, tampered or foreign."""
    try:
        claims = jwt.decode(
            token,
            _signing_key(settings),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise StaleCredentials("The admin token has expired; sign in again") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The admin token is invalid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise Unauthorized("The admin token is invalid")
    return subject


class AuthService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.admins = AdminRepository(session)
        self.settings = settings

    async def authenticate(self, token: str) -> Admin:
        admin = await self.admins.by_username(token_subject(token, self.settings))
        if admin is None:
            raise StaleCredentials("The admin account no longer exists")
        return admin

    async def create_admin(
        self, username: str, password: str, *, allow_weak: bool = False
    ) -> Admin:
        if not USERNAME.fullmatch(username):
            raise InvalidInput("username", "3-64 letters, digits or . _ @ -")
        if len(password) < MIN_PASSWORD_LENGTH and not allow_weak:
            raise InvalidInput("password", f"at least {MIN_PASSWORD_LENGTH} characters")
        if await self.admins.by_username(username) is not None:
            raise Conflict(f"Admin {username} already exists")
        return await self.admins.add(
            Admin(username=username, password_hash=password_hasher.hash(password))
        )

    async def has_admins(self) -> bool:
        return await self.admins.count() > 0


# Windows are counted from here, so that every instance cuts them at the same moments.
_WINDOWS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Limit:
    scope: str
    attempts: int
    window: timedelta

    def window_start(self, now: datetime) -> datetime:
        return _WINDOWS_EPOCH + ((now - _WINDOWS_EPOCH) // self.window) * self.window


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    """An attempt counted: the (key, window start) of each of its counts."""

    windows: tuple[tuple[str, datetime], ...] = ()


def _limit(scope: str, rate: str) -> _Limit:
    item = parse(rate)
    return _Limit(scope, item.amount, timedelta(seconds=item.get_expiry()))


class SignInLimits:
    """RATE_LIMIT_SIGN_IN_USERNAME and RATE_LIMIT_SIGN_IN_ADDRESS, counted in the database."""

    def __init__(self, sessionmaker: Sessionmaker, *, per_username: str, per_address: str) -> None:
        self.sessionmaker = sessionmaker
        self.username = _limit("user", per_username)
        self.address = _limit("address", per_address)

    @classmethod
    def from_settings(cls, sessionmaker: Sessionmaker, settings: Settings) -> SignInLimits | None:
        """None when RATE_LIMIT_ENABLED is false."""
        if not settings.rate_limit_enabled:
            return None
        return cls(
            sessionmaker,
            per_username=settings.rate_limit_sign_in_username,
            per_address=settings.rate_limit_sign_in_address,
        )

    async def count(self, username: str, client_host: str | None) -> SignInAttempt:
        """Counts an attempt; raises RateLimited (nothing counted) when it is over a limit."""
        now = utcnow()
        # The username as the database compares it (MySQL ignores case), hashed: any length.
        user = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
        client = client_key(client_host)
        limited = [(self.username, f"user:{user}")]
        if client is not None:
            limited.append((self.address, f"address:{client}"))
        limited.sort(key=lambda pair: pair[1])  # one lock order for every attempt
        windows = tuple((key, limit.window_start(now)) for limit, key in limited)
        async with locked_transaction(self.sessionmaker) as session:
            counts = SignInCountRepository(session)
            attempts = await counts.hit(windows)
            over = [
                (limit, start)
                for (limit, _), (_, start), made in zip(limited, windows, attempts, strict=True)
                if made > limit.attempts
            ]
            if over:
                await counts.unhit(windows)
        if over:
            retry_after = max(
                math.ceil((start + limit.window - now).total_seconds()) for limit, start in over
            )
            logger.warning(
                "sign-in refused: too many attempts for %s (from %s)",
                " and ".join(limit.scope for limit, _ in over),
                client,
            )
            raise RateLimited(
                f"Too many sign-in attempts; try again in {max(retry_after, 1)} s",
                retry_after=max(retry_after, 1),
            )
        async with locked_transaction(self.sessionmaker) as session:
            longest = max(self.username.window, self.address.window)
            await SignInCountRepository(session).purge_before(now - longest)
        return SignInAttempt(windows)

    async def forget(self, attempt: SignInAttempt) -> None:
        """Takes back the attempt of a successful sign-in: only failures count."""
        async with locked_transaction(self.sessionmaker) as session:
            await SignInCountRepository(session).unhit(attempt.windows)


class SignInService:
    """Signs admins in; with `limits`, at most so many failed attempts per window.

    Runs transactions of its own, each short, so that none is held while the password is
    checked (argon2, some tens of milliseconds by design).
    """

    def __init__(
        self, sessionmaker: Sessionmaker, settings: Settings, limits: SignInLimits | None
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.limits = limits

    async def sign_in(self, username: str, password: str, client_host: str | None) -> IssuedToken:
        """A token for the admin; raises RateLimited (429, before the password is checked)
        or Unauthorized (401, the same for an unknown username and a wrong password)."""
        attempt = (
            await self.limits.count(username, client_host)
            if self.limits is not None
            else SignInAttempt()
        )
        async with read_transaction(self.sessionmaker) as session:
            admin = await AdminRepository(session).by_username(username)
        valid = password_hasher.verify(password, admin.password_hash if admin else _dummy_hash())
        if admin is None or not valid:
            raise Unauthorized("Wrong username or password")
        if self.limits is not None:
            await self.limits.forget(attempt)
        return issue_token(admin.username, self.settings)
