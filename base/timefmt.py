"""Timestamps in v1's exact shape: `YYYY-MM-DDTHH:MM:SS.mmmZ`, always UTC.

Every event's `at` and every message time in event data use this shape, so
text written by Pro reads the same as v1's. Nothing
orders by these strings; event sequence numbers do that.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def to_iso(moment: datetime) -> str:
    """Format an aware (or UTC-naive) datetime as `...T..:..:..mmmZ`."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_second_cache: list = [None, ""]


def iso_now() -> str:
    """The current UTC time in the event-log shape (cheap: on every append's path)."""
    now = time.time()
    second = int(now)
    if _second_cache[0] != second:
        _second_cache[0] = second
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (a trailing `Z` allowed) into an aware UTC datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
