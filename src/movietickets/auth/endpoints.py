"""Admin sign-in (OAuth2 password flow, as Swagger UI's "Authorize" button speaks it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from movietickets.auth.dependencies import AuthServiceDep
from movietickets.auth.schemas import AccessToken, AdminSignIn
from movietickets.errors import SIGN_IN_EXAMPLES, error_responses

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/token",
    operation_id="createAccessToken",
    summary="Sign in as an admin; returns a short-lived bearer token",
    responses=error_responses(401, 422, 429, examples=SIGN_IN_EXAMPLES),
)
async def create_access_token(
    form: Annotated[AdminSignIn, Form()], auth: AuthServiceDep
) -> AccessToken:
    issued = await auth.sign_in(form.username, form.password)
    return AccessToken(access_token=issued.access_token, expires_in=issued.expires_in)
