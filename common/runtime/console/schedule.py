"""A source's schedule in words, and its next run times (croniter), for the console's sources page."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _minutes(field: str) -> str | None:
    """``3,18,33,48`` → "at minutes 3, 18, 33 and 48"; ``*/15`` → "every 15 minutes"; None when not simple."""
    if field == "*":
        return "every minute"
    if field.startswith("*/") and field[2:].isdigit():
        return f"every {int(field[2:])} minutes"
    parts = field.split(",")
    if all(p.isdigit() for p in parts):
        if len(parts) == 1:
            return f"at minute {int(parts[0])}"
        return "at minutes " + ", ".join(str(int(p)) for p in parts[:-1]) + f" and {int(parts[-1])}"
    return None


def in_words(cron: str, time_zone: str = "UTC") -> str:
    """A 5-field cron as a sentence for people; the expression itself when it is not one of the common shapes.

    >>> in_words("40 5 * * *")
    'every day at 05:40 UTC'
    >>> in_words("3,18,33,48 * * * *")
    'every hour at minutes 3, 18, 33 and 48 (UTC)'
    """
    fields = cron.split()
    if len(fields) != 5:
        return f"cron {cron} ({time_zone})"
    minute, hour, dom, month, dow = fields
    if dom == "*" and month == "*":
        if hour == "*" and (words := _minutes(minute)) is not None:
            return f"{words} ({time_zone})" if words.startswith("every") else f"every hour {words} ({time_zone})"
        if minute.isdigit() and hour.isdigit():
            at = f"{int(hour):02d}:{int(minute):02d} {time_zone}"
            if dow == "*":
                return f"every day at {at}"
            if dow.isdigit() and int(dow) % 7 < 7:
                return f"every {DAYS[int(dow) % 7]} at {at}"
    return f"cron {cron} ({time_zone})"


def next_runs(cron: str, time_zone: str = "UTC", *, count: int = 5, now: datetime | None = None) -> list[str]:
    """The next ``count`` fire times, as ISO datetimes in UTC."""
    start = (now or datetime.now(UTC)).astimezone(ZoneInfo(time_zone))
    it = croniter(cron, start)
    return [it.get_next(datetime).astimezone(UTC).isoformat() for _ in range(count)]
