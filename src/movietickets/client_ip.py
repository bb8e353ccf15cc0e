"""The client's address: the socket peer, or what our own proxies say it is.

Anyone can send `X-Forwarded-For`, so it is read only when the socket peer is one of
TRUSTED_PROXIES, and then from the right: each proxy appends the address it received the
request from, so the rightmost entries were written by our proxies and the first address
that is not a trusted proxy is the client. An unreadable entry makes the whole header
unreliable: it is ignored and the peer is the client. (uvicorn's own proxy handling is off in
`movietickets serve`; it trusts 127.0.0.1 by default, which would let anyone behind a local
proxy choose their address.)
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_FORWARDED_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}


def parse_address(value: str) -> IPAddress | None:
    """`1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`; None if unreadable.

    IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) becomes IPv4.
    """
    value = value.strip()
    if value.startswith("["):
        value, bracket, _ = value[1:].partition("]")
        if not bracket:
            return None
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address, normalised; `peer` unchanged if it is not an IP address."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return peer
    if not forwarded_for or not in_networks(peer_address, trusted_proxies):
        return str(peer_address)
    client = peer_address
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return str(peer_address)
        client = address
        if not in_networks(address, trusted_proxies):
            break
    # Every hop trusted: the leftmost is as close to the client as anyone can tell.
    return str(client)


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
