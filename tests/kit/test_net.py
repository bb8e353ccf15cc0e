"""The client's address: the peer, or X-Forwarded-For read from the right past trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from movietickets.kit.net import IPNetwork, client_address, client_key, parse_address
from movietickets.middleware.client_address import ClientAddressMiddleware

PROXIES: list[IPNetwork] = [ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("196.201.214.200", "196.201.214.200"),
        (" 196.201.214.200 ", "196.201.214.200"),
        ("196.201.214.200:443", "196.201.214.200"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:196.201.214.200", "196.201.214.200"),
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_parse_address(value: str, expected: str) -> None:
    assert str(parse_address(value)) == expected


@pytest.mark.parametrize(
    "value",
    ["", "unknown", "testclient", "1.2.3", "1.2.3.4.5", "300.1.1.1", "[2001:db8::1", "1.2.3.4:x:y"],
)
def test_unreadable_addresses(value: str) -> None:
    assert parse_address(value) is None


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], []) == "203.0.113.7"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_address("203.0.113.7", ["196.201.214.200"], PROXIES) == "203.0.113.7"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_address("10.0.0.2", [], PROXIES) == "10.0.0.2"


def test_one_trusted_proxy() -> None:
    assert client_address("10.0.0.2", ["196.201.214.200"], PROXIES) == "196.201.214.200"


def test_a_chain_is_read_from_the_right_past_trusted_proxies() -> None:
    # The client forged the first entry; our two proxies appended the rest.
    header = "1.1.1.1, 196.201.214.200, 10.0.0.9"
    assert client_address("10.0.0.2", [header], PROXIES) == "196.201.214.200"


def test_several_headers_are_one_list() -> None:
    headers = ["1.1.1.1", "196.201.214.200", "10.0.0.9"]
    assert client_address("10.0.0.2", headers, PROXIES) == "196.201.214.200"


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client_address("10.0.0.2", ["10.1.1.1, 10.0.0.9"], PROXIES) == "10.1.1.1"


@pytest.mark.parametrize(
    "header",
    ["", "   ", "garbage", "196.201.214.200, garbage", "196.201.214.200,", ",", "x, 10.0.0.9"],
)
def test_an_unreadable_header_is_ignored(header: str) -> None:
    assert client_address("10.0.0.2", [header], PROXIES) == "10.0.0.2"


def test_unreadable_entries_beyond_the_client_do_not_matter() -> None:
    header = "garbage, 196.201.214.200, 10.0.0.9"
    assert client_address("10.0.0.2", [header], PROXIES) == "196.201.214.200"


def test_ipv6_proxy_and_client() -> None:
    header = "2001:db8::7, [2001:db8:ffff::5]:8080"
    assert client_address("2001:db8:ffff::1", [header], PROXIES) == "2001:db8::7"


def test_ipv4_client_behind_an_ipv6_proxy() -> None:
    assert client_address("2001:db8:ffff::1", ["196.201.214.200"], PROXIES) == "196.201.214.200"


def test_an_ipv4_mapped_peer_is_normalised_and_trusted() -> None:
    assert client_address("::ffff:10.0.0.2", ["196.201.214.200"], PROXIES) == "196.201.214.200"
    assert client_address("::ffff:203.0.113.7", [], PROXIES) == "203.0.113.7"


def test_a_peer_that_is_not_an_address_is_kept() -> None:
    assert client_address("testclient", ["196.201.214.200"], PROXIES) == "testclient"
    assert client_address(None, ["196.201.214.200"], PROXIES) is None


async def _seen(
    peer: tuple[str, int], headers: dict[str, str], proxies: list[IPNetwork] = PROXIES
) -> tuple[object, str]:
    """The ASGI `client` and `scheme` an app behind `ClientAddressMiddleware` sees."""
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["client"], seen["scheme"] = scope["client"], scope["scheme"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=ClientAddressMiddleware(app, proxies), client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/", headers=headers)
    return seen["client"], str(seen["scheme"])


async def test_middleware_sets_the_client_from_a_trusted_proxy() -> None:
    headers = {"X-Forwarded-For": "196.201.214.200", "X-Forwarded-Proto": "https"}
    assert await _seen(("10.0.0.2", 5000), headers) == (("196.201.214.200", 0), "https")


async def test_middleware_ignores_headers_from_anyone_else() -> None:
    headers = {"X-Forwarded-For": "196.201.214.200", "X-Forwarded-Proto": "https"}
    assert await _seen(("203.0.113.7", 5000), headers) == (("203.0.113.7", 5000), "http")


@pytest.mark.parametrize("proto", ["ftp", "https, http", ""])
async def test_middleware_ignores_unknown_schemes(proto: str) -> None:
    headers = {"X-Forwarded-Proto": proto}
    assert await _seen(("10.0.0.2", 5000), headers) == (("10.0.0.2", 5000), "http")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("testclient", "testclient"),
        ("x" * 60, "x" * 45),
        (None, None),
        ("", None),
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(host: str | None, key: str | None) -> None:
    assert client_key(host) == key
