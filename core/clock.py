"""The one clock for stored times: UTC, ISO 8601 to the millisecond, so stored times sort as text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def now(after: timedelta | None = None) -> str:
    """The time now (or `after` from now), as stored: `2026-12-06T23:00:00.000+00:00`."""
    moment = datetime.now(timezone.utc)
    return (moment + after if after else moment).isoformat(timespec="milliseconds")
