"""The CORS policy for browsers on CORS_ORIGINS (Starlette's CORSMiddleware does the work)."""

from __future__ import annotations

from typing import Any

CORS_METHODS = ["GET", "POST", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Ticket-Token",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = ["Retry-After", "X-Request-ID", "Idempotent-Replayed"]


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Starlette's CORSMiddleware for these origins. Tokens travel in headers, not cookies."""
    return {
        "allow_origins": origins,
        "allow_methods": CORS_METHODS,
        "allow_headers": CORS_REQUEST_HEADERS,
        "expose_headers": CORS_EXPOSED_HEADERS,
        "allow_credentials": False,
        "max_age": 600,
    }
