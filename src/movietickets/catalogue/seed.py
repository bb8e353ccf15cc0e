"""Sample movies for a new, empty development database."""

from __future__ import annotations

from datetime import timedelta

from movietickets.catalogue.repository import MovieRepository
from movietickets.db.engine import Sessionmaker
from movietickets.db.models import Movie
from movietickets.kit.clock import utcnow

SAMPLE_MOVIES = [
    ("The Matrix", "A computer hacker learns about the true nature of reality", 500, 200),
    ("Inception", "A thief who steals corporate secrets through dream-sharing", 600, 150),
    ("Black Panther", "T'Challa returns home to Wakanda to take his place as king", 700, 100),
]


async def seed_sample_movies(sessionmaker: Sessionmaker) -> int:
    """Adds the samples if the movie table is empty; returns how many were added."""
    async with sessionmaker() as session, session.begin():
        repository = MovieRepository(session)
        if await repository.count() > 0:
            return 0
        now = utcnow().replace(minute=0, second=0, microsecond=0)
        for days, (title, description, price, seats) in enumerate(SAMPLE_MOVIES, start=1):
            await repository.add(
                Movie(
                    title=title,
                    description=description,
                    show_time=now + timedelta(days=days, hours=18 - now.hour),
                    price=price,
                    max_tickets=seats,
                    image_url=None,
                    seats_paid=0,
                )
            )
        return len(SAMPLE_MOVIES)
