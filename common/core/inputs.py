"""Types for what callers send (query strings, headers, JSON bodies): ASCII integers, strict booleans, bounded dates.

Every request parameter is parsed by one of these inside a pydantic model, never by hand: ``str.isdigit()``
is true for ``"²"`` and ``"٣"``, which ``int()`` then refuses or reads as another number, and date arithmetic
near years 1 and 9999 raises ``OverflowError``, not ``ValueError``. Each type here raises ``ValueError``
only, which pydantic turns into a validation error naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

#: An integer as text: ASCII digits only (no sign, no spaces, no Unicode digits), at most 18 of them.
ASCII_INT = re.compile(r"[0-9]{1,18}")
#: An ISO day, ASCII only: ``YYYY-MM-DD``.
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: The words a query string or header may use for a boolean.
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})
#: The widest moments a range bound may name: a day's arithmetic (the next day, the day before) stays in range.
FIRST_MOMENT = datetime(1, 1, 2, tzinfo=UTC)
LAST_MOMENT = datetime(9999, 12, 30, tzinfo=UTC)


def ascii_int(value: Any) -> int:
    """An int, or text of ASCII digits.

    Raises:
        ValueError: anything else (a bool, a float, a sign, a Unicode digit).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and ASCII_INT.fullmatch(value):
        return int(value)
    raise ValueError("must be a whole number written with the digits 0-9")


def text_bool(value: Any) -> bool:
    """A bool, or one of ``true``, ``false``, ``1``, ``0`` (a query string or header).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    raise ValueError("must be true or false")


def strict_bool(value: Any) -> bool:
    """A JSON boolean, nothing else (not 0, 1 or "true").

    Raises:
        ValueError: anything but a bool.
    """
    if isinstance(value, bool):
        return value
    raise ValueError("must be a JSON boolean, true or false")


def iso_day(value: Any) -> date:
    """A day written ``YYYY-MM-DD`` (ASCII), years 1 to 9999.

    Raises:
        ValueError: not that shape, or no such day.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not ISO_DAY.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return date.fromisoformat(value)


def parse_bound(value: str, *, end: bool) -> datetime:
    """A range bound: an ISO date (whole days; an ``end`` date is included) or an ISO datetime (UTC if naive).

    Raises:
        ValueError: not an ISO date or datetime, or outside years 1 to 9999 (where day arithmetic overflows).
    """
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("must be an ISO date (YYYY-MM-DD) or datetime")
    try:
        if len(value) == 10:
            day = iso_day(value)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        moment = datetime.min.replace(tzinfo=UTC)  # refused just below
    except ValueError:
        raise ValueError("must be an ISO date (YYYY-MM-DD) or datetime") from None
    if not FIRST_MOMENT <= moment <= LAST_MOMENT:
        raise ValueError(f"must be between {FIRST_MOMENT.date()} and {LAST_MOMENT.date()}")
    return moment


def _bound(value: Any) -> str:
    parse_bound(value, end=False)
    return str(value)


#: An integer parameter (query string, header or JSON), ASCII digits only.
AsciiInt = Annotated[int, BeforeValidator(ascii_int)]
#: A boolean in a query string or header: ``true``/``false``/``1``/``0``.
TextBool = Annotated[bool, BeforeValidator(text_bool)]
#: A boolean in a JSON body: ``true`` or ``false`` only.
StrictBool = Annotated[bool, BeforeValidator(strict_bool)]
#: A day, ``YYYY-MM-DD``.
IsoDay = Annotated[
    date,
    BeforeValidator(iso_day),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date"}),
]
#: A range bound as sent (kept as text): an ISO date or datetime within years 1 to 9999.
Bound = Annotated[str, BeforeValidator(_bound), Field(max_length=64)]
