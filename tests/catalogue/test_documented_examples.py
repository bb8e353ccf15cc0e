"""The request examples of the document, sent as they are, do what they say."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.helpers import wait_for_status


def example(app: FastAPI, schema: str) -> dict[str, Any]:
    value: dict[str, Any] = app.openapi()["components"]["schemas"][schema]["examples"][0]
    return value


async def test_the_documented_movie_can_be_created_and_sold(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await client.post("/api/movies", json=example(app, "MovieCreate"))
    assert created.status_code == 201, created.text
    movie = created.json()["movie"]

    order = {**example(app, "PaymentRequest"), "movieId": movie["movieId"]}
    bought = await client.post("/api/make-payment", json=order)
    assert bought.status_code == 200, bought.text
    paid = await wait_for_status(client, bought.json()["ticketId"], "Paid")
    assert paid["totalAmount"] == movie["price"] * order["quantity"]
