"""Cloud Scheduler's schedules: 5-field unix cron on wall-clock time in an IANA time zone, and RFC 3339 text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MAX_CRON_CANDIDATES = 10_000

_MONTHS = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
_DAYS = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,\-]+$")


class ScheduleError(ValueError):
    """A schedule or time zone that Cloud Scheduler would refuse."""


@lru_cache(maxsize=256)
def zone(time_zone: str) -> ZoneInfo:
    """The IANA zone of a job; empty means UTC, and ``utc`` is accepted in any case (API reference)."""
    name = time_zone.strip()
    if not name or name.lower() == "utc":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"time_zone {time_zone!r} is not a tz database name") from exc


@lru_cache(maxsize=1024)
def validate_schedule(schedule: str) -> str:
    """Check a 5-field unix-cron schedule; return it with single spaces. Raises :class:`ScheduleError`."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"schedule {schedule!r} must have 5 fields (minute hour day-of-month month day-of-week); "
            "the emulator does not support the legacy English-like syntax"
        )
    for index, part in enumerate(fields):
        if not _CRON_FIELD_RE.match(part):
            raise ScheduleError(f"schedule {schedule!r}: field {part!r} has unsupported characters")
        names = {word.upper() for word in re.findall(r"[A-Za-z]+", part)}
        allowed = _MONTHS if index == 3 else _DAYS if index == 4 else set()
        if names - allowed:
            raise ScheduleError(f"schedule {schedule!r}: {sorted(names - allowed)} not allowed in {part!r}")
    normalized = " ".join(fields)
    try:
        croniter(normalized, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as exc:  # croniter raises several error types
        raise ScheduleError(f"schedule {schedule!r} is not valid unix-cron: {exc}") from exc
    return normalized


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant of a naive wall-clock time in ``tz``.

    A time that occurs twice (clocks go back) maps to its first occurrence. A time that does not
    exist (clocks go forward) maps to the end of the gap, that is the transition instant itself.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the transition (the later instant),
    # fold=1 with the offset after it (the earlier instant). The transition lies between them.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first
    if lo > hi:
        lo, hi = hi, lo
    after = hi.astimezone(tz).utcoffset()
    for _ in range(64):  # bisection to the second; a gap is at most a few hours
        if hi - lo <= timedelta(seconds=1):
            break
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def next_fire_time(schedule: str, time_zone: str, after: datetime) -> datetime:
    """The first scheduled instant strictly after ``after`` (UTC), on wall-clock time in ``time_zone``."""
    tz = zone(time_zone)
    normalized = validate_schedule(schedule)
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0)
    iterator = croniter(normalized, wall)
    for _ in range(MAX_CRON_CANDIDATES):
        candidate = iterator.get_next(datetime)
        instant = _wall_to_utc(candidate, tz)
        if instant > after:
            return instant
    raise ScheduleError(f"schedule {schedule!r} has no fire time after {after.isoformat()}")


def rfc3339(instant: datetime, time_zone: str = "UTC") -> str:
    """``instant`` as RFC 3339 with the offset of ``time_zone`` (``Z`` when the offset is zero)."""
    local = instant.astimezone(zone(time_zone))
    spec = "seconds" if local.microsecond == 0 else "microseconds"
    if local.utcoffset() == timedelta(0):
        return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return local.isoformat(timespec=spec)
