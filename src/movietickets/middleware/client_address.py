"""The client's address in the ASGI scope, from X-Forwarded-For of TRUSTED_PROXIES only."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from movietickets.kit.net import IPNetwork, client_address, in_networks, parse_address

_FORWARDED_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}


class ClientAddressMiddleware:
    """Puts the client's address (see `client_address`) in the ASGI scope's `client`.

    Everything downstream (the rate limits, the callback allowlist, `request.client`) then
    sees the client rather than the proxy. From a trusted proxy, `X-Forwarded-Proto` also
    sets the scheme, so that redirects to https stay on https.
    """

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope.get("client"):
            await self.app(scope, receive, send)
            return
        peer: str = scope["client"][0]
        peer_address = parse_address(peer)
        if peer_address is None or not in_networks(peer_address, self.trusted_proxies):
            await self.app(scope, receive, send)
            return
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
        scope = dict(scope)
        host = client_address(peer, forwarded_for, self.trusted_proxies)
        if host != str(peer_address):
            scope["client"] = (host, 0)
        if proto in _FORWARDED_SCHEMES:
            http, websocket = _FORWARDED_SCHEMES[proto]
            scope["scheme"] = http if scope["type"] == "http" else websocket
        await self.app(scope, receive, send)
