"""The reconciler inside a real server: silent pushes are settled without any client action."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import buy, create_movie, ticket, wait_for_status
from tests.live_server import live_server


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with live_server(
        database_url,
        RECONCILE_IN_SERVICE="true",
        RECONCILE_FIRST_QUERY_SECONDS="0.3",
        RECONCILE_RETRY_SECONDS="0.2",
        RECONCILE_POLL_SECONDS="0.1",
        RECONCILE_GIVE_UP_SECONDS="3",
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.5",
        MPESA_READ_TIMEOUT_SECONDS="1",
    ) as base_url:
        yield base_url


@pytest.mark.parametrize(
    ("phone", "status", "code"), [("0712349003", "Paid", "0"), ("0712341037", "Failed", "1037")]
)
async def test_push_without_callback_is_settled_by_the_reconciler(
    http: httpx.AsyncClient, phone: str, status: str, code: str
) -> None:
    movie = await create_movie(http)
    response = await buy(http, movie["movieId"], phone=phone)
    assert response.status_code == 200
    settled = await wait_for_status(http, response.json()["ticketId"], status)
    assert settled["resultCode"] == code


async def test_push_without_answer_ends_unconfirmed_and_its_seats_released(
    http: httpx.AsyncClient,
) -> None:
    movie = await create_movie(http, max_tickets=1)
    response = await buy(http, movie["movieId"], phone="0712349001")
    assert response.status_code == 504
    ticket_id = response.json()["ticketId"]
    assert (await ticket(http, ticket_id))["paymentStatus"] == "Pending"
    # The prompt may have reached the phone: never called Failed.
    released = await wait_for_status(http, ticket_id, "Unconfirmed", seconds=30)
    assert released["resultCode"] is None
    assert "outcome unknown" in released["resultDesc"]
    assert (await buy(http, movie["movieId"], phone="0712349003")).status_code == 200
