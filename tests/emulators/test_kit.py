"""The emulators' shared kit: one status table, one backoff, one time conversion, a clock that can stand still."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.local.emulators.kit.backoff import backoff
from common.local.emulators.kit.clock import FrozenClock, SystemClock, make_clock
from common.local.emulators.kit.rpc import Code, http_to_code
from common.local.emulators.kit.timeconv import duration, micros_text, seconds, timestamp


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (200, Code.OK),
        (204, Code.OK),
        (400, Code.INVALID_ARGUMENT),
        (404, Code.NOT_FOUND),
        (412, Code.FAILED_PRECONDITION),
        (416, Code.OUT_OF_RANGE),
        (418, Code.FAILED_PRECONDITION),
        (429, Code.RESOURCE_EXHAUSTED),
        (500, Code.INTERNAL),
        (502, Code.INTERNAL),
        (503, Code.UNAVAILABLE),
        (504, Code.DEADLINE_EXCEEDED),
        (302, Code.UNKNOWN),
    ],
)
def test_one_http_status_table(status: int, code: Code) -> None:
    assert http_to_code(status) is code


def test_backoff_doubles_then_grows_linearly_and_is_capped() -> None:
    assert [backoff(n, 10, 300, 3) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]
    assert backoff(0, 0.1, 3600, 16) == 0.1  # before any failure: min_backoff
    assert backoff(10_000, 0.1, 3600, 100) == 3600  # no overflow with many doublings


def test_time_conversions_round_trip() -> None:
    t = 1767225600.1234564
    assert micros_text(t) == f"{timestamp(t).seconds}.{timestamp(t).nanos // 1000:06d}"
    instant = datetime(2024, 1, 1, 12, 30, 5, 250000, tzinfo=UTC)
    assert timestamp(instant).ToDatetime(tzinfo=UTC) == instant
    assert seconds(duration(1.5)) == 1.5
    assert seconds(duration(timedelta(minutes=3))) == 180


def test_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(datetime(2024, 1, 1, tzinfo=UTC))
    assert clock.time() == clock.monotonic() == 1704067200.0
    clock.advance(0.125)
    assert clock.time() == 1704067200.125
    clock.move_to(datetime(2023, 1, 1, tzinfo=UTC))  # never backwards
    assert clock.now() == datetime(2024, 1, 1, 0, 0, 0, 125000, tzinfo=UTC)
    assert isinstance(make_clock(None), SystemClock)
    assert isinstance(make_clock(datetime(2024, 1, 1, tzinfo=UTC)), FrozenClock)
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(datetime(2024, 1, 1))
