"""Admin sign-in (OAuth2 password flow, as Swagger UI's "Authorize" button speaks it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request

from movietickets.auth.dependencies import SignInServiceDep
from movietickets.auth.schemas import AccessToken, AdminSignIn
from movietickets.errors import SIGN_IN_EXAMPLES, error_responses

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/token",
    operation_id="createAccessToken",
    summary="Sign in as an admin; returns a short-lived bearer token",
    description="Failed attempts are limited per username and per client address: over a "
    "limit the answer is 429 with `Retry-After`, whatever the password, until the window "
    "passes.",
    responses=error_responses(401, 422, 429, examples=SIGN_IN_EXAMPLES),
)
async def create_access_token(
    request: Request, form: Annotated[AdminSignIn, Form()], sign_in: SignInServiceDep
) -> AccessToken:
    client_host = request.client.host if request.client else None
    issued = await sign_in.sign_in(form.username, form.password, client_host)
    return AccessToken(access_token=issued.access_token, expires_in=issued.expires_in)
