"""Ticket privacy: the buyer's secret access token and the masked view of their details."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from movietickets.db.models import Ticket


def new_access_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    # A fast hash is enough: the token is 192 random bits, not a password.
    return hashlib.sha256(token.encode()).hexdigest()


def token_opens(ticket: Ticket, token: str | None) -> bool:
    if token is None or ticket.access_token_hash is None:
        return False
    return hmac.compare_digest(token_hash(token), ticket.access_token_hash)


def mask_name(name: str) -> str:
    """`Jane Wanjiru` -> `J*** W***`."""
    return " ".join(f"{word[0]}***" for word in name.split()) or "***"


def mask_phone(phone_number: str) -> str:
    """`254712345678` -> `2547*****678`."""
    return phone_number[:4] + "*" * max(len(phone_number) - 7, 0) + phone_number[-3:]
