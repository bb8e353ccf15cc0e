"""IP addresses: parsing, networks, and the client's address behind our own proxies.

The client's address is the socket peer, or what our own proxies say it is.

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

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# An IPv6 subscriber is given a whole /64 (and privacy extensions pick a new address in it
# every so often), so the limits per client count a /64 as one client.
IPV6_CLIENT_PREFIX = 64
# Room for any address or network written as text (an IPv6 address with its IPv4 tail).
ADDRESS_LENGTH = 45


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


def client_key(host: str | None) -> str | None:
    """Who a limit per client address counts: the IPv4 address, or the IPv6 address's /64
    (`2001:db8:1:2::/64`); a peer that is not an IP address as it is; None if unknown."""
    if not host:
        return None
    address = parse_address(host)
    if address is None:
        return host[:ADDRESS_LENGTH]
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)
