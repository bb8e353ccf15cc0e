"""The report service, on the request's transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from movietickets.admin.service import ReportService
from movietickets.dependencies import ResourcesDep, SessionDep


async def get_report_service(session: SessionDep, resources: ResourcesDep) -> ReportService:
    return ReportService(session, resources.settings)


ReportServiceDep = Annotated[ReportService, Depends(get_report_service)]
