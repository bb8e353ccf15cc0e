"""Sign-in bodies (the OAuth2 password flow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


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
