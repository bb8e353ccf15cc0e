"""The one clock of the service, and the cinema's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# The cinema's local time: times sent without an offset are read in it. It is also the time
# zone Daraja writes its timestamps in.
NAIROBI = ZoneInfo("Africa/Nairobi")


def utcnow() -> datetime:
    return datetime.now(UTC)
