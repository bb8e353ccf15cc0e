"""Movie bodies: `{"movies": [...]}`, `{"movie": {...}}`, `{"message": ..., "movie": {...}}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from movietickets.db.models import Movie
from movietickets.kit.types import (
    DIGITS_ONLY,
    MAX_ROW_ID,
    HttpUrlString,
    Shillings,
    StrictInt,
    UtcDateTime,
)

# Anything but plain digits (`+1`, `%201`, `1_000`), zero and out-of-range ids are refused with
# 422 before any query runs.
MovieId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The movie's id."), DIGITS_ONLY]

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Description = Annotated[str, StringConstraints(max_length=5000)]

_MATRIX: dict[str, Any] = {
    "movieId": 1,
    "title": "The Matrix",
    "description": "A computer hacker learns about the true nature of reality",
    "showTime": "2025-06-15T18:30:00.000Z",
    "price": 500,
    "max_tickets": 200,
    "imageUrl": "https://example.com/matrix.jpg",
    "dateCreated": "2025-05-21T12:00:00.000Z",
    "lastUpdated": "2025-05-21T12:00:00.000Z",
}


class MovieCreate(BaseModel):
    """A new showing. Unknown fields are ignored."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "The Matrix Resurrections",
                    "description": "The fourth installment in The Matrix franchise",
                    # Next year's: the example, sent as it is, is a showing that can be sold.
                    "showTime": f"{datetime.now(UTC).year + 1}-07-15T20:00:00.000Z",
                    "price": 600,
                    "max_tickets": 150,
                    "imageUrl": "https://example.com/matrix4.jpg",
                }
            ]
        }
    )

    title: Title
    description: Description | None = None
    showTime: UtcDateTime = Field(
        description="ISO 8601, in the years 2000 to 2100 (UTC); a time without an offset is "
        "Africa/Nairobi time."
    )
    price: Shillings = Field(description="Whole shillings per ticket, 1 to 250000.")
    max_tickets: Annotated[StrictInt, Field(ge=1, le=100_000)] = 100
    imageUrl: HttpUrlString | None = None


class MovieUpdate(BaseModel):
    """The fields to change; the others keep their values. Unknown fields are ignored."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"price": 650, "max_tickets": 180}]})

    title: Title | None = None
    description: Description | None = None
    showTime: UtcDateTime | None = None
    price: Shillings | None = None
    max_tickets: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    imageUrl: HttpUrlString | None = None

    @model_validator(mode="after")
    def _required_fields_are_not_null(self) -> MovieUpdate:
        for name in ("title", "showTime", "price", "max_tickets"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class MovieSummary(BaseModel):
    """A movie as shown inside a ticket."""

    movieId: int
    title: str
    description: str | None
    showTime: UtcDateTime
    price: int
    max_tickets: int
    imageUrl: str | None

    @classmethod
    def from_model(cls, movie: Movie) -> MovieSummary:
        return cls(**_summary_fields(movie))


def _summary_fields(movie: Movie) -> dict[str, Any]:
    return {
        "movieId": movie.movie_id,
        "title": movie.title,
        "description": movie.description,
        "showTime": movie.show_time,
        "price": movie.price,
        "max_tickets": movie.max_tickets,
        "imageUrl": movie.image_url,
    }


class MoviePublic(MovieSummary):
    model_config = ConfigDict(json_schema_extra={"examples": [_MATRIX]})

    dateCreated: UtcDateTime
    lastUpdated: UtcDateTime

    @classmethod
    def from_model(cls, movie: Movie) -> MoviePublic:
        return cls(
            **_summary_fields(movie),
            dateCreated=movie.date_created,
            lastUpdated=movie.last_updated,
        )


class MovieList(BaseModel):
    movies: list[MoviePublic]


class MovieEnvelope(BaseModel):
    movie: MoviePublic


class MovieCreated(BaseModel):
    message: Literal["Movie added successfully"] = "Movie added successfully"
    movie: MoviePublic
