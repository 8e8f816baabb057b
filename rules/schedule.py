"""When a scheduled task is due: v1's schedule kinds, with Pro's stricter rules.

Pure functions, so the IPC actions and the scheduler compute one answer. Unlike
v1: 5-field cron in the task's zone, intervals in whole ms ("5m" is an error),
naive `once` times in the configured zone, not the process's.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from base.timefmt import parse_iso, to_iso

MAX_INTERVAL_MS = 10 * 366 * 86_400_000  # ten years: longer is a typo, and would overflow dates
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_INTERVAL_RE = re.compile(r"[0-9]{1,15}")
_ONCE_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?"
)


class ScheduleError(ValueError):
    """A schedule value (or time zone) that cannot be run, and why."""


def zone_of(tz: str) -> ZoneInfo:
    """The IANA zone named `tz`, or ScheduleError."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleError(f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)") from exc


def _utc_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def _cron_expression(value: str) -> str:
    if not isinstance(value, str):
        raise ScheduleError(f"invalid cron {value!r}: expected text")
    expression = CRON_ALIASES.get(value.strip().lower(), value.strip())
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"invalid cron {value!r}: standard cron has 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    return " ".join(fields)


def cron_next(value: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first time the cron expression matches, strictly after `after`, in UTC.

    Wall times are the zone's. In the repeated hour when clocks go back, a
    job with fixed hours runs once (as classic cron does); `*` hours keep going.
    """
    expression = _cron_expression(value)
    try:
        iterator = croniter(expression, after.astimezone(zone))
        every_hour = croniter.expand(expression)[0][1] == ["*"]
        candidate = iterator.get_next(datetime)
        while candidate.fold == 1 and not every_hour:
            candidate = iterator.get_next(datetime)
    except CroniterBadDateError as exc:
        raise ScheduleError(f"cron {value!r} never matches a date") from exc
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ScheduleError(f"invalid cron {value!r}: {exc}") from exc
    return candidate.astimezone(timezone.utc)


def interval_ms(value: str) -> int:
    """The interval in milliseconds: digits only, more than zero."""
    if not isinstance(value, str) or not _INTERVAL_RE.fullmatch(value):
        raise ScheduleError(
            f"invalid interval {value!r}: a whole number of milliseconds (5 minutes is 300000)"
        )
    milliseconds = int(value)
    if not 0 < milliseconds <= MAX_INTERVAL_MS:
        raise ScheduleError(f"invalid interval {value!r}: from 1 ms to {MAX_INTERVAL_MS} ms (ten years)")
    return milliseconds


def once_at(value: str, zone: ZoneInfo) -> datetime:
    """`YYYY-MM-DDTHH:MM[:SS]` in `zone` (an explicit `Z` or offset wins), in UTC.

    A local time skipped by a clock change reads with the offset before the
    change; a repeated one is its first occurrence.
    """
    match = _ONCE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(
            f"invalid once time {value!r}: use YYYY-MM-DDTHH:MM[:SS] (local time), optionally with Z or +HH:MM"
        )
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ScheduleError(f"invalid once time {value!r}: {exc}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)


def first_run(schedule_type: str, value: str, *, tz: str, now: datetime | None = None) -> str | None:
    """When a new (or changed) task is first due, as an ISO UTC timestamp.

    A past `once` time is accepted: the task is due at once. Raises
    ScheduleError for an unknown type, a bad value or an unknown zone.
    """
    moment = _utc_now(now)
    zone = zone_of(tz)
    if schedule_type == "cron":
        return to_iso(cron_next(value, zone, moment))
    if schedule_type == "interval":
        return to_iso(moment + timedelta(milliseconds=interval_ms(value)))
    if schedule_type == "once":
        return to_iso(once_at(value, zone))
    raise ScheduleError(f"unknown schedule_type {schedule_type!r} (use cron, interval or once)")


def next_run_after_run(
    schedule_type: str,
    value: str,
    *,
    tz: str,
    previous_due: str | None,
    now: datetime | None = None,
) -> str | None:
    """When a task is due again after a run; None means never (a `once` task).

    cron: the next match after now (missed slots are not replayed). interval:
    the fixed grid from `previous_due`, skipping missed slots, strictly in the
    future. Raises ScheduleError for a value that should never have been stored.
    """
    moment = _utc_now(now)
    zone = zone_of(tz)
    if schedule_type == "once":
        return None
    if schedule_type == "cron":
        return to_iso(cron_next(value, zone, moment))
    if schedule_type == "interval":
        step = timedelta(milliseconds=interval_ms(value))
        if previous_due is None:
            return to_iso(moment + step)
        start = parse_iso(previous_due)
        slots = max(1, (moment - start) // step + 1)
        return to_iso(start + slots * step)
    raise ScheduleError(f"unknown schedule_type {schedule_type!r} (use cron, interval or once)")
