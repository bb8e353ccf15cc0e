"""Admin sign-in (OAuth2 password flow, as Swagger UI's "Authorize" button speaks it)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form
from pydantic import BaseModel

from movietickets.dependencies import AuthServiceDep
from movietickets.errors import error_responses

router = APIRouter(prefix="/api/auth", tags=["auth"])


class AdminSignIn(BaseModel):
    """The OAuth2 password grant's form fields (RFC 6749, section 4.3)."""

    grant_type: Literal["password"] | None = None
    username: str
    password: str
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int


@router.post(
    "/token",
    operation_id="createAccessToken",
    summary="Sign in as an admin; returns a short-lived bearer token",
    responses=error_responses(401, 422, 429),
)
async def create_access_token(
    form: Annotated[AdminSignIn, Form()], auth: AuthServiceDep
) -> AccessToken:
    issued = await auth.sign_in(form.username, form.password)
    return AccessToken(access_token=issued.access_token, expires_in=issued.expires_in)
