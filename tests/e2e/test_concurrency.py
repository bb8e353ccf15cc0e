"""Concurrency proofs against a real uvicorn server with two worker processes.

500 buyers rush a 100-seat showing; 50 callbacks for one ticket arrive at once. The same rush
with the original system's unlocked check-then-insert shows that these tests catch an oversell.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.db.models import CallbackLog, Movie, PaymentStatus, Ticket
from movietickets.settings import Settings
from tests.conftest import admin_headers
from tests.helpers import FUTURE, callback_body
from tests.live_server import live_server

BUYERS = 500
SEATS = 100
WORKERS = 2


@dataclass
class Rush:
    accepted_seats: int
    accepted: int
    refused: int
    other: Counter[int]
    seconds: float


async def rush(base_url: str, movie_id: int) -> Rush:
    """BUYERS concurrent make-payment requests, quantities 1-3, all for one movie."""
    rng = random.Random(2026)
    quantities = [rng.randint(1, 3) for _ in range(BUYERS)]
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        started = time.perf_counter()

        async def buy(n: int) -> tuple[int, int]:
            response = await http.post(
                "/api/make-payment",
                json={
                    "movieId": movie_id,
                    "customerName": f"Buyer {n}",
                    "phoneNumber": f"07{n:04d}4149",
                    "quantity": quantities[n],
                },
            )
            return response.status_code, quantities[n]

        results = await asyncio.gather(*(buy(n) for n in range(BUYERS)))
        seconds = time.perf_counter() - started
    statuses = Counter(status for status, _ in results)
    return Rush(
        accepted_seats=sum(q for status, q in results if status == 200),
        accepted=statuses[200],
        refused=statuses[409],
        other=Counter({s: c for s, c in statuses.items() if s not in (200, 409)}),
        seconds=seconds,
    )


async def create_movie(base_url: str, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        body = {"title": "Opening night", "showTime": FUTURE, "price": 100, "max_tickets": SEATS}
        response = await http.post("/api/movies", json=body)
        movie_id: int = response.json()["movie"]["movieId"]
        return movie_id


async def settled_seats(
    sessionmaker: async_sessionmaker[AsyncSession], movie_id: int
) -> tuple[int, int, int]:
    """(seats of Paid tickets, the movie's seatsPaid counter, Pending tickets), once settled."""
    by_status: dict[str, tuple[int, int]] = {}
    seats_paid = 0
    for _ in range(300):
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Ticket.payment_status, func.sum(Ticket.quantity), func.count())
                .where(Ticket.movie_id == movie_id)
                .group_by(Ticket.payment_status)
            )
            by_status = {status: (int(seats), count) for status, seats, count in rows.all()}
            seats_paid = (await session.get_one(Movie, movie_id)).seats_paid
        if PaymentStatus.PENDING not in by_status:
            break
        await asyncio.sleep(0.1)
    paid = by_status.get(PaymentStatus.PAID, (0, 0))[0]
    return paid, seats_paid, by_status.get(PaymentStatus.PENDING, (0, 0))[1]


def report(name: str, backend: str, result: Rush, oversold: int) -> None:
    """Appends the figures to the JSON-lines file named by PROOFS_REPORT, when set."""
    target = os.environ.get("PROOFS_REPORT")
    if not target:
        return
    line = {
        "scenario": name,
        "backend": backend,
        "requests": BUYERS,
        "accepted": result.accepted,
        "accepted_seats": result.accepted_seats,
        "refused_409": result.refused,
        "other": dict(result.other),
        "oversold": oversold,
        "seconds": round(result.seconds, 2),
    }
    with Path(target).open("a") as file:
        file.write(json.dumps(line) + "\n")


@pytest.fixture
def locked_server(database_url: str, engine: AsyncEngine) -> Iterator[str]:
    with live_server(database_url, workers=WORKERS, SIMULATOR_CALLBACK_DELAY_SECONDS="0.2") as url:
        yield url


@pytest.fixture
def unlocked_server(database_url: str, engine: AsyncEngine) -> Iterator[str]:
    with live_server(
        database_url,
        workers=WORKERS,
        command="tests.e2e.unlocked_server",
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.2",
    ) as url:
        yield url


async def test_500_buyers_never_oversell_100_seats(
    locked_server: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    backend: str,
) -> None:
    movie_id = await create_movie(locked_server, await admin_headers(sessionmaker, settings))
    result = await rush(locked_server, movie_id)
    assert result.other == Counter(), f"unexpected statuses: {result.other}"
    assert result.accepted + result.refused == BUYERS
    assert result.accepted_seats <= SEATS
    # Nearly every seat is sold: refusals are real (the seats left were fewer than asked).
    assert result.accepted_seats >= SEATS - 2
    paid, counter, pending = await settled_seats(sessionmaker, movie_id)
    assert pending == 0
    assert paid == counter == result.accepted_seats
    report("500 buyers, 100 seats, locked", backend, result, max(paid - SEATS, 0))


async def test_the_rush_catches_an_unlocked_seat_check(
    unlocked_server: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    backend: str,
) -> None:
    movie_id = await create_movie(unlocked_server, await admin_headers(sessionmaker, settings))
    result = await rush(unlocked_server, movie_id)
    paid, _, _ = await settled_seats(sessionmaker, movie_id)
    report("500 buyers, 100 seats, UNLOCKED", backend, result, max(paid - SEATS, 0))
    assert result.accepted_seats > SEATS, "the unlocked check should have oversold"


async def test_50_concurrent_callbacks_for_one_ticket_make_one_transition(
    locked_server: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    headers = await admin_headers(sessionmaker, settings)
    movie_id = await create_movie(locked_server, headers)
    async with httpx.AsyncClient(base_url=locked_server, timeout=30, headers=headers) as http:
        order = {"movieId": movie_id, "customerName": "A", "phoneNumber": "0712349003"}
        bought = (await http.post("/api/make-payment", json={**order, "quantity": 2})).json()
        checkout_id = bought["checkoutRequestId"]
        bodies = [callback_body(checkout_id, amount=200, receipt=f"R{n:09d}") for n in range(25)]
        bodies += [callback_body(checkout_id, 1032, metadata=False) for _ in range(25)]
        random.Random(7).shuffle(bodies)
        responses = await asyncio.gather(
            *(http.post("/api/mpesa-callback", json=body) for body in bodies)
        )
        assert {response.status_code for response in responses} == {200}
        # A later contradicting callback changes nothing either.
        ticket = (await http.get(f"/api/tickets/{bought['ticketId']}")).json()["ticket"]
    async with sessionmaker() as session:
        outcomes = Counter((await session.scalars(select(CallbackLog.outcome))).all())
        movie = await session.get(Movie, movie_id)
        assert movie is not None
    assert outcomes == Counter({"applied": 1, "ignored": 49})
    assert movie.seats_paid == (2 if ticket["paymentStatus"] == "Paid" else 0)
