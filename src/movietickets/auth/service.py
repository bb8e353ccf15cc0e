"""Admin accounts: argon2 password hashes and short-lived signed JWTs (HS256)."""

from __future__ import annotations

import functools
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import SecretStr

from movietickets.auth.repository import AdminRepository, ServiceSecretRepository
from movietickets.db.engine import AsyncSession, Sessionmaker, locked_transaction
from movietickets.db.models import Admin
from movietickets.errors import Conflict, InvalidInput, StaleCredentials, Unauthorized
from movietickets.kit.clock import utcnow
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

    async def sign_in(self, username: str, password: str) -> IssuedToken:
        admin = await self.admins.by_username(username)
        valid = password_hasher.verify(password, admin.password_hash if admin else _dummy_hash())
        if admin is None or not valid:
            raise Unauthorized("Wrong username or password")
        return issue_token(admin.username, self.settings)

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
