"""Welcome message and health probes."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from movietickets.db.engine import ping
from movietickets.dependencies import ResourcesDep
from movietickets.errors import READINESS_EXAMPLES, ServiceUnavailable, error_responses

router = APIRouter(tags=["system"])


class Welcome(BaseModel):
    message: str = "Welcome to the Movie Ticket System API"


class Health(BaseModel):
    status: str


@router.get("/", operation_id="welcome", summary="Welcome message")
async def welcome() -> Welcome:
    return Welcome()


@router.get("/healthz", operation_id="healthCheck", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readinessCheck",
    summary="The database is reachable",
    responses=error_responses(503, examples=READINESS_EXAMPLES),
)
async def readyz(resources: ResourcesDep) -> Health:
    try:
        await ping(resources.engine)
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise ServiceUnavailable("The database is not reachable") from exc
    return Health(status="ready")
