"""The movie catalogue: `/api/movies`, and the original API's `/api/purchase-ticket` listing."""

from __future__ import annotations

from enum import Enum

from fastapi import APIRouter, Response, status

from movietickets.auth.dependencies import AdminDep
from movietickets.catalogue.dependencies import CatalogueDep, MovieServiceDep
from movietickets.catalogue.schemas import (
    MovieCreate,
    MovieCreated,
    MovieEnvelope,
    MovieId,
    MovieList,
    MoviePublic,
    MovieUpdate,
)
from movietickets.errors import (
    DELETE_MOVIE_EXAMPLES,
    MOVIE_EXAMPLES,
    UPDATE_MOVIE_EXAMPLES,
    error_responses,
)

# Tagged per route: the original API lists `/api/purchase-ticket` under tickets.
router = APIRouter(prefix="/api")
MOVIES: list[str | Enum] = ["movies"]


def json_bytes(body: bytes) -> Response:
    """Bytes the catalogue cache serialised already; `response_model` still documents them."""
    return Response(body, media_type="application/json")


@router.get(
    "/movies",
    tags=MOVIES,
    response_model=MovieList,
    operation_id="listMovies",
    summary="List all movies",
)
async def list_movies(catalogue: CatalogueDep) -> Response:
    return json_bytes(await catalogue.movies_body())


@router.get(
    "/movies/{id}",
    tags=MOVIES,
    response_model=MovieEnvelope,
    operation_id="getMovie",
    summary="Get one movie",
    responses=error_responses(404, 422, examples=MOVIE_EXAMPLES),
)
async def get_movie(id: MovieId, catalogue: CatalogueDep) -> Response:
    return json_bytes(await catalogue.movie_body(id))


@router.post(
    "/movies",
    tags=MOVIES,
    operation_id="createMovie",
    summary="Add a movie (admin)",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 413, 422, 429),
)
async def create_movie(data: MovieCreate, service: MovieServiceDep, _: AdminDep) -> MovieCreated:
    movie = await service.create_movie(data)
    return MovieCreated(movie=MoviePublic.from_model(movie))


@router.patch(
    "/movies/{id}",
    tags=MOVIES,
    operation_id="updateMovie",
    summary="Change a movie (admin)",
    description="Only the fields sent change. `max_tickets` cannot go below the seats already "
    "sold or held (409).",
    responses=error_responses(400, 401, 404, 409, 413, 422, 429, examples=UPDATE_MOVIE_EXAMPLES),
)
async def update_movie(
    id: MovieId, changes: MovieUpdate, service: MovieServiceDep, _: AdminDep
) -> MovieEnvelope:
    return MovieEnvelope(movie=MoviePublic.from_model(await service.update_movie(id, changes)))


@router.delete(
    "/movies/{id}",
    tags=MOVIES,
    operation_id="deleteMovie",
    summary="Delete a movie (admin)",
    description="Refused (409) while it has Paid, Pending or Unconfirmed tickets, or tickets "
    "owed a refund.",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 409, 422, 429, examples=DELETE_MOVIE_EXAMPLES),
)
async def delete_movie(id: MovieId, service: MovieServiceDep, _: AdminDep) -> None:
    await service.delete_movie(id)


@router.get(
    "/purchase-ticket",
    response_model=MovieList,
    operation_id="listMoviesForPurchase",
    summary="Movies on sale (same body as GET /api/movies)",
    tags=["tickets"],
)
async def purchase_ticket(catalogue: CatalogueDep) -> Response:
    return json_bytes(await catalogue.movies_body())
