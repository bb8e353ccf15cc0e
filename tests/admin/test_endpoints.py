"""Admin sign-in, protected routes, movie management, reports and ticket privacy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.auth.service import ALGORITHM, AUDIENCE
from movietickets.db.models import Admin, Ticket
from movietickets.kit.clock import utcnow
from movietickets.settings import Settings, UnsafeSettings
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, TEST_JWT_KEY, make_settings
from tests.helpers import FUTURE, buy, callback_body, create_movie, wait_for_status

PROTECTED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/movies", {"title": "X", "showTime": FUTURE, "price": 1}),
    ("PATCH", "/api/movies/{id}", {"price": 2}),
    ("DELETE", "/api/movies/{id}", None),
    ("GET", "/api/admin/sales", None),
    ("GET", "/api/admin/tickets", None),
    ("GET", "/api/admin/anomalies", None),
]


def run(command: list[str], stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (the test's own command line)
        command, input=stdin, env=env, capture_output=True, text=True, check=False
    )


def forged(claims: dict[str, Any], key: str = TEST_JWT_KEY) -> str:
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def valid_claims(**changes: Any) -> dict[str, Any]:
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": ADMIN_USERNAME,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    return {**claims, **changes}


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/token", data={"username": username, "password": password})


async def test_sign_in_returns_a_bearer_token(
    anonymous_client: httpx.AsyncClient, client: Any
) -> None:
    response = await sign_in(anonymous_client, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await anonymous_client.get("/api/admin/sales", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("username", "password"), [(ADMIN_USERNAME, "wrong"), ("nobody", ADMIN_PASSWORD)]
)
async def test_wrong_credentials_are_401_with_one_message(
    anonymous_client: httpx.AsyncClient, client: Any, username: str, password: str
) -> None:
    response = await sign_in(anonymous_client, username, password)
    assert response.status_code == 401
    assert response.json() == {"error": "Wrong username or password", "code": "unauthorized"}


BAD_TOKENS = {
    "missing": None,
    "garbage": "not-a-jwt",
    "expired": forged(valid_claims(exp=utcnow() - timedelta(seconds=1))),
    "other key": forged(valid_claims(), key="another-key-0123456789abcdef0123456789"),
    "other audience": forged(valid_claims(aud="someone-else")),
    "no expiry": forged({"sub": ADMIN_USERNAME, "aud": AUDIENCE}),
    "alg none": jwt.encode(valid_claims(), key="", algorithm="none"),
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_protected_routes_refuse_bad_tokens(
    anonymous_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    token: str | None,
) -> None:
    movie = await create_movie(client)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await anonymous_client.request(
        method, path.format(id=movie["movieId"]), json=body, headers=headers
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get(f"/api/movies/{movie['movieId']}")).json()["movie"] == movie


async def test_tampered_token_is_refused(
    anonymous_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    token = client.headers["authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for tampered in (f"{header}.{payload}.{flipped}", f"{header}.{payload[:-1]}x.{signature}"):
        response = await anonymous_client.get(
            "/api/admin/sales", headers={"Authorization": f"Bearer {tampered}"}
        )
        assert response.status_code == 401


async def test_token_of_a_removed_admin_is_refused(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(Admin))
    assert (await client.get("/api/admin/sales")).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_protected_routes_work_for_admins(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    movie = await create_movie(client)
    response = await client.request(method, path.format(id=movie["movieId"]), json=body)
    assert response.status_code in (200, 201, 204), response.text


def test_swagger_authorize_uses_the_password_flow() -> None:
    from movietickets.app import create_app

    schema = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    [scheme] = schema["components"]["securitySchemes"].values()
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/auth/token"
    assert schema["paths"]["/api/movies"]["post"]["security"]


async def test_patch_changes_only_what_is_sent(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client, description="old", price=500)
    response = await client.patch(
        f"/api/movies/{movie['movieId']}", json={"price": 650.0, "description": None}
    )
    assert response.status_code == 200
    changed = response.json()["movie"]
    assert changed["price"] == 650
    assert changed["description"] is None
    assert changed["title"] == movie["title"]
    assert changed["lastUpdated"] >= movie["lastUpdated"]


@pytest.mark.parametrize(
    "body",
    [{"title": None}, {"price": 12.5}, {"max_tickets": 0}, {"showTime": "soon"}, {"price": None}],
)
async def test_patch_refuses_invalid_values(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    movie = await create_movie(client)
    response = await client.patch(f"/api/movies/{movie['movieId']}", json=body)
    assert response.status_code == 422
    assert (await client.get(f"/api/movies/{movie['movieId']}")).json()["movie"] == movie


async def test_max_tickets_cannot_drop_below_seats_sold_or_held(
    client: httpx.AsyncClient,
) -> None:
    movie = await create_movie(client, max_tickets=10)
    paid = (await buy(client, movie["movieId"], quantity=3)).json()
    await wait_for_status(client, paid["ticketId"], "Paid")
    await buy(client, movie["movieId"], phone="0712349003", quantity=2)  # held
    path = f"/api/movies/{movie['movieId']}"
    refused = await client.patch(path, json={"max_tickets": 4})
    assert refused.status_code == 409
    assert "5 seats" in refused.json()["error"]
    assert refused.json()["seatsAvailable"] == 5
    assert (await client.patch(path, json={"max_tickets": 5})).status_code == 200


async def test_delete_is_refused_while_tickets_are_live(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    movie = await create_movie(client)
    pending = (await buy(client, movie["movieId"], phone="0712349003")).json()
    path = f"/api/movies/{movie['movieId']}"
    assert (await client.delete(path)).status_code == 409
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Ticket).values(payment_status="Failed", result_code="1032"))
    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.get(f"/api/tickets/{pending['ticketId']}")).status_code == 404
    assert (await client.delete(path)).status_code == 404


async def test_sales_report(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client, price=200, max_tickets=20)
    other = await create_movie(client, title="Empty")
    paid = (await buy(client, movie["movieId"], quantity=2)).json()
    await wait_for_status(client, paid["ticketId"], "Paid")
    cancelled = (await buy(client, movie["movieId"], phone="0712341032")).json()
    await wait_for_status(client, cancelled["ticketId"], "Failed")
    poor = (await buy(client, movie["movieId"], phone="0712340001")).json()
    await wait_for_status(client, poor["ticketId"], "Failed")
    await buy(client, movie["movieId"], phone="0712349003", quantity=3)  # held

    report = (await client.get("/api/admin/sales")).json()
    by_id = {row["movieId"]: row for row in report["movies"]}
    assert by_id[movie["movieId"]] == {
        "movieId": movie["movieId"],
        "title": movie["title"],
        "showTime": movie["showTime"],
        "max_tickets": 20,
        "seatsPaid": 2,
        "seatsHeld": 3,
        "revenue": 400,
        "paidPurchases": 1,
        "failedPurchases": 2,
        "cancelledPurchases": 1,
        "refundsDue": 0,
    }
    assert by_id[other["movieId"]]["seatsPaid"] == 0
    assert report["totalRevenue"] == 400
    future = (utcnow() + timedelta(days=1)).isoformat()
    later = (await client.get("/api/admin/sales", params={"from": future})).json()
    assert later["totalRevenue"] == 0
    assert (await client.get("/api/admin/sales", params={"from": "yesterday"})).status_code == 422


async def test_ticket_listing_filters_and_pages(client: httpx.AsyncClient) -> None:
    first = await create_movie(client)
    second = await create_movie(client)
    for n in range(5):
        await buy(client, first["movieId"], phone=f"071234{n:04d}")
    await buy(client, second["movieId"], phone="0799999003")
    page = (await client.get("/api/admin/tickets", params={"limit": 2, "offset": 1})).json()
    assert page["total"] == 6
    assert len(page["tickets"]) == 2
    by_movie = (
        await client.get("/api/admin/tickets", params={"movieId": second["movieId"]})
    ).json()
    assert [t["phoneNumber"] for t in by_movie["tickets"]] == ["254799999003"]
    by_phone = (await client.get("/api/admin/tickets", params={"phone": "+254 799 999 003"})).json()
    assert by_phone["total"] == 1
    pending = (await client.get("/api/admin/tickets", params={"status": "Pending"})).json()
    assert all(t["paymentStatus"] == "Pending" for t in pending["tickets"])
    for bad in ({"status": "Lost"}, {"phone": "12"}, {"limit": 0}, {"limit": 201}, {"offset": -1}):
        assert (await client.get("/api/admin/tickets", params=bad)).status_code == 422


async def test_anomalies(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    movie = await create_movie(client, price=100)
    wrong = (await buy(client, movie["movieId"], phone="0712349003")).json()
    await client.post(
        "/api/mpesa-callback", json=callback_body(wrong["checkoutRequestId"], amount=1)
    )
    await client.post(
        "/api/mpesa-callback", json=callback_body("ws_CO_nobody", 1032, metadata=False)
    )
    stuck = (await buy(client, movie["movieId"], phone="0712349003")).json()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Ticket)
            .where(Ticket.ticket_id == stuck["ticketId"])
            .values(date_created=utcnow() - timedelta(hours=1))
        )
    found = (await client.get("/api/admin/anomalies")).json()
    assert [t["ticketId"] for t in found["refundsDue"]] == [wrong["ticketId"]]
    assert [c["ticketId"] for c in found["amountMismatches"]] == [wrong["ticketId"]]
    assert [c["checkoutRequestId"] for c in found["unmatchedCallbacks"]] == ["ws_CO_nobody"]
    assert [t["ticketId"] for t in found["stuckPending"]] == [stuck["ticketId"]]


async def test_buyer_details_need_the_ticket_token(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient
) -> None:
    movie = await create_movie(client)
    bought = (
        await anonymous_client.post(
            "/api/make-payment",
            json={
                "movieId": movie["movieId"],
                "customerName": "Jane Wanjiru",
                "phoneNumber": "0712349003",
                "quantity": 1,
            },
        )
    ).json()
    token = bought["ticketAccessToken"]
    assert len(token) >= 32
    path = f"/api/tickets/{bought['ticketId']}"

    masked = (await anonymous_client.get(path)).json()["ticket"]
    assert masked["customerName"] == "J*** W***"
    assert masked["phoneNumber"] == "2547*****003"
    assert masked["piiMasked"] is True
    assert masked["paymentStatus"] == "Pending"
    wrong = (await anonymous_client.get(path, headers={"X-Ticket-Token": token[:-1] + "x"})).json()
    assert wrong["ticket"]["piiMasked"] is True

    for headers, http in (({"X-Ticket-Token": token}, anonymous_client), ({}, client)):
        full = (await http.get(path, headers=headers)).json()["ticket"]
        assert full["customerName"] == "Jane Wanjiru"
        assert full["phoneNumber"] == "254712349003"
        assert full["piiMasked"] is False


async def test_tickets_cannot_be_enumerated_for_pii(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient
) -> None:
    movie = await create_movie(client)
    for n in range(3):
        await buy(client, movie["movieId"], phone=f"07123{n:05d}")
    listing = await anonymous_client.get("/api/admin/tickets")
    assert listing.status_code == 401
    for ticket_id in range(1, 50):
        response = await anonymous_client.get(f"/api/tickets/{ticket_id}")
        if response.status_code == 200:
            assert "*" in response.json()["ticket"]["phoneNumber"]


def test_production_refuses_unsafe_settings() -> None:
    with pytest.raises(UnsafeSettings) as refused:
        Settings(_env_file=None, environment="production").check_can_serve()
    message = str(refused.value)
    assert "JWT_SECRET_KEY" in message
    assert "MPESA_CALLBACK_TOKEN" in message
    assert "simulator" in message
    safe = Settings(
        _env_file=None,
        environment="production",
        jwt_secret_key=SecretStr("k" * 40),
        mpesa_callback_token=SecretStr("t" * 32),
        mpesa_consumer_key=SecretStr("key"),
        mpesa_consumer_secret=SecretStr("secret"),
    )
    assert safe.seed_sample_movies is False
    safe.check_can_serve()


async def test_create_admin_command(
    database_url: str,
    anonymous_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    command = [
        sys.executable,
        "-m",
        "movietickets.cli",
        "create-admin",
        "alice",
        "--password-stdin",
    ]
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING"}
    weak = await asyncio.to_thread(run, command, "short\n", env)
    assert weak.returncode != 0
    assert "at least 12 characters" in weak.stderr
    made = await asyncio.to_thread(run, command, "a long passphrase\n", env)
    assert made.returncode == 0, made.stderr
    async with sessionmaker() as session:
        admin = (await session.scalars(select(Admin).where(Admin.username == "alice"))).one()
    assert admin.password_hash.startswith("$argon2")
    assert "a long passphrase" not in json.dumps(admin.password_hash)
    response = await sign_in(anonymous_client, "alice", "a long passphrase")
    assert response.status_code == 200


async def test_stale_admin_token_reads_a_ticket_masked_and_a_forged_one_is_refused(
    client: httpx.AsyncClient,
    anonymous_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    movie = await create_movie(client)
    ticket = (await buy(client, movie["movieId"])).json()
    path = f"/api/tickets/{ticket['ticketId']}"
    expired = forged(valid_claims(exp=utcnow() - timedelta(seconds=1)))
    response = await anonymous_client.get(path, headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 200, response.text
    assert response.json()["ticket"]["piiMasked"] is True

    async with sessionmaker() as session, session.begin():
        await session.execute(delete(Admin))
    deleted_admin = await client.get(path)
    assert deleted_admin.status_code == 200
    assert deleted_admin.json()["ticket"]["piiMasked"] is True

    for bad in (BAD_TOKENS["garbage"], BAD_TOKENS["other key"], BAD_TOKENS["alg none"]):
        refused = await anonymous_client.get(path, headers={"Authorization": f"Bearer {bad}"})
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
