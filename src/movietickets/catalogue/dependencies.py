"""The catalogue's service (on the request's transaction) and its per-process cache."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from movietickets.catalogue.cache import CatalogueCache
from movietickets.catalogue.service import MovieService
from movietickets.dependencies import ResourcesDep, SessionDep


async def get_movie_service(session: SessionDep, resources: ResourcesDep) -> MovieService:
    return MovieService(session, resources.catalogue.changed)


MovieServiceDep = Annotated[MovieService, Depends(get_movie_service)]


# The catalogue's read routes use no session at all: they answer from the cache. Read straight
# from the request: one dependency less to solve on the busiest routes.
async def get_catalogue(request: Request) -> CatalogueCache:
    catalogue: CatalogueCache = request.app.state.resources.catalogue
    return catalogue


CatalogueDep = Annotated[CatalogueCache, Depends(get_catalogue)]
