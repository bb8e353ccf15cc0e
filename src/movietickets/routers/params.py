"""Path parameters shared by several routers."""

from typing import Annotated

from fastapi import Path

# Non-numeric, zero, negative and out-of-range ids are refused with 422 before any query runs.
MovieId = Annotated[int, Path(ge=1, le=2_147_483_647, description="The movie's id.")]
TicketId = Annotated[int, Path(ge=1, le=2_147_483_647, description="The ticket's id.")]
