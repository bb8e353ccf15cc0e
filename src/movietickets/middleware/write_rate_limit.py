"""RATE_LIMIT_WRITES per client address on every write, refused with 429 and Retry-After.

Daraja's callbacks are not counted here: Safaricom calls from a handful of addresses, and a
refused callback is a payment left to the reconciler, so one with the right secret is never
limited; refused ones (which only the callback service can tell) count against
RATE_LIMIT_REFUSED_CALLBACKS there. Nor is the built-in simulator, which the service itself
calls. The client's address is the scope's `client`, which
`ClientAddressMiddleware` has already set when the service is behind trusted proxies.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from movietickets.daraja.setup import SIMULATOR_MOUNT
from movietickets.errors import RateLimited, app_error_response
from movietickets.kit.ratelimit import RateLimits

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CALLBACK_PATHS = frozenset({"/api/mpesa-callback", "/api/payment-callback"})


def is_limited(method: str, path: str) -> bool:
    return (
        method in WRITE_METHODS
        and path.rstrip("/") not in CALLBACK_PATHS
        and not path.startswith(SIMULATOR_MOUNT + "/")
    )


class WriteRateLimitMiddleware:
    """Reads the limits from the app's `Resources`, which the lifespan creates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    @staticmethod
    async def _refusal(scope: Scope) -> Response | None:
        client = scope.get("client")
        if not client or not is_limited(scope["method"], scope["path"]):
            return None
        resources = getattr(scope["app"].state, "resources", None)
        limits: RateLimits | None = getattr(resources, "rate_limits", None)
        if limits is None:
            return None
        retry_after = await limits.hit_write(client[0])
        if retry_after is None:
            return None
        error = RateLimited(
            f"Too many requests from your address (at most {limits.writes}); "
            f"try again in {retry_after} s",
            retry_after=retry_after,
        )
        return app_error_response(error)
