"""The input types every request model parses with: ASCII integers, strict booleans, days and range bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel, ValidationError

from common.core.inputs import AsciiInt, StrictBool, TextBool, ascii_int, iso_day, parse_bound


@pytest.mark.parametrize("value", ["²", "٣", "\uff11", "-1", "+1", " 1", "1.0", "1e3", "", "1" * 19, True, 1.0, None])
def test_ascii_int_refuses_anything_but_ascii_digits(value) -> None:
    with pytest.raises(ValueError, match="digits 0-9"):
        ascii_int(value)


def test_ascii_int_reads_ascii_digits_and_ints() -> None:
    assert ascii_int("042") == 42 and ascii_int(7) == 7


@pytest.mark.parametrize(
    ("value", "end"),
    [
        ("0001-01-01", False),
        ("9999-12-31", True),
        ("0001-01-01T00:00:00+05:00", False),
        ("9999-12-31T23:59:59-05:00", False),
        ("2024-02-30", False),
        ("2024-01-0²", False),
        ("\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661", False),  # Arabic-Indic digits
        ("tomorrow", True),
    ],
)
def test_parse_bound_raises_value_error_only(value: str, end: bool) -> None:
    with pytest.raises(ValueError):  # OverflowError escaped before
        parse_bound(value, end=end)


def test_parse_bound_keeps_its_meaning() -> None:
    assert parse_bound("2024-01-16", end=True) == datetime(2024, 1, 17, tzinfo=UTC)
    assert parse_bound("2024-01-16T12:00", end=False) == datetime(2024, 1, 16, 12, tzinfo=UTC)


def test_iso_day_needs_the_ascii_shape() -> None:
    assert iso_day("2024-01-05") == date(2024, 1, 5)
    for bad in ("2024-1-5", "20240105", 20240105, "²024-01-05"):
        with pytest.raises(ValueError):
            iso_day(bad)


class Flags(BaseModel):
    body: StrictBool = False
    query: TextBool = False
    number: AsciiInt = 0


def test_booleans_are_booleans() -> None:
    assert Flags.model_validate({"body": True, "query": "true", "number": "3"}) == Flags(
        body=True, query=True, number=3
    )
    for bad in ({"body": 1}, {"body": "true"}, {"query": "2"}, {"query": "yes"}, {"number": "٣"}):
        with pytest.raises(ValidationError):
            Flags.model_validate(bad)


def test_header_numbers_outside_the_request_models_take_ascii_digits_only() -> None:
    from common.core.errors import parse_retry_after
    from common.gcp.idtokens import _max_age

    assert parse_retry_after("²") is None and parse_retry_after("\u0663") is None  # raised ValueError / read 3
    assert parse_retry_after("5") == 5.0
    assert _max_age("max-age=²") is None and _max_age("public, max-age=300") == 300.0
