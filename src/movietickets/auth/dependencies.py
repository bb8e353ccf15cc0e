"""Who is calling: the admin behind a bearer token, required or optional."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from movietickets.auth.service import AuthService, SignInLimits, SignInService
from movietickets.db.models import Admin
from movietickets.dependencies import ResourcesDep, SessionDep
from movietickets.errors import StaleCredentials, Unauthorized

# auto_error=False: a missing token is answered in the one error shape by `require_admin`.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def get_auth_service(session: SessionDep, resources: ResourcesDep) -> AuthService:
    return AuthService(session, resources.settings)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


# Not on the request's transaction: sign-in runs short ones of its own around the password
# check, so that no transaction (on SQLite: the write lock) is held while argon2 works.
async def get_sign_in_service(resources: ResourcesDep) -> SignInService:
    limits = SignInLimits.from_settings(resources.sessionmaker, resources.settings)
    return SignInService(resources.sessionmaker, resources.settings, limits)


SignInServiceDep = Annotated[SignInService, Depends(get_sign_in_service)]


async def optional_admin(
    auth: AuthServiceDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Admin | None:
    return None if token is None else await auth.authenticate(token)


async def require_admin(admin: Annotated[Admin | None, Depends(optional_admin)]) -> Admin:
    if admin is None:
        raise Unauthorized()
    return admin


async def viewing_admin(
    auth: AuthServiceDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Admin | None:
    """For public reads that show more to an admin: a stale token reads as no token at all."""
    try:
        return await optional_admin(auth, token)
    except StaleCredentials:
        return None


AdminDep = Annotated[Admin, Depends(require_admin)]
ViewingAdminDep = Annotated[Admin | None, Depends(viewing_admin)]
