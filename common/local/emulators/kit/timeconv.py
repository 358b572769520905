"""Timestamp and Duration conversions, in one place for both emulators."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2


def timestamp(t: float | datetime) -> timestamp_pb2.Timestamp:
    """Epoch seconds or an aware datetime → Timestamp, truncated to the microsecond as Cloud Tasks does."""
    if isinstance(t, datetime):
        out = timestamp_pb2.Timestamp()
        out.FromDatetime(t)
        return out
    micros = math.floor(t * 1_000_000)
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> float:
    """Timestamp → epoch seconds."""
    return ts.seconds + ts.nanos / 1e9


def micros_text(t: float) -> str:
    """``seconds.micros`` with the same truncated microsecond as :func:`timestamp`.

    Formatting the float with `:.6f` rounds instead, so the text could read one microsecond later than
    the Timestamp (a CI run caught exactly that in the X-CloudTasks-TaskETA header).
    """
    micros = math.floor(t * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def duration(d: float | timedelta) -> duration_pb2.Duration:
    """Seconds or a timedelta → Duration (to the nanosecond)."""
    if isinstance(d, timedelta):
        out = duration_pb2.Duration()
        out.FromTimedelta(d)
        return out
    nanos = round(d * 1e9)
    return duration_pb2.Duration(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)


def seconds(d: duration_pb2.Duration) -> float:
    """Duration → seconds."""
    return d.seconds + d.nanos / 1e9
