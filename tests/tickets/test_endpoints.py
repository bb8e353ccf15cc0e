"""`GET /api/tickets/{id}`: the id is plain digits, as in the admin listing's movieId filter."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest

from tests.catalogue.test_endpoints import NOT_PLAIN_DIGITS
from tests.helpers import buy, create_movie


@pytest.mark.parametrize("form", NOT_PLAIN_DIGITS)
async def test_ids_that_are_not_plain_digits_are_422(client: httpx.AsyncClient, form: str) -> None:
    movie = await create_movie(client)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    response = await client.get(f"/api/tickets/{form.format(id=ticket_id)}")
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "path.id"
    movie_id = unquote(form.format(id=movie["movieId"]))
    listing = await client.get("/api/admin/tickets", params={"movieId": movie_id})
    assert listing.status_code == 422
    assert listing.json()["details"][0]["field"] == "query.movieId"
    assert (await client.get(f"/api/tickets/{ticket_id}")).status_code == 200
