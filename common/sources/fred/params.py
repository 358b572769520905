"""FRED's params model: the series and the observation and vintage windows a job asks for."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationInfo, field_validator

from common.sources.base import (
    Params,
)

SECRET = "FRED_API_KEY"
SECRET_ENV = f"TRIBUTARY_SECRET_{SECRET}"

DEFAULT_SERIES = ("DFF", "DGS10", "UNRATE", "GDP")
MAX_SERIES = 500
#: FRED's earliest and latest real-time dates ("the beginning and the end of time" in its docs).
EARLIEST = "1776-07-04"
LATEST = "9999-12-31"
#: FRED dates its vintages in St. Louis time.
FRED_TZ = ZoneInfo("America/Chicago")

SERIES_RE = re.compile(r"^[A-Z0-9_]{1,64}$")


def fred_today(now: datetime) -> date:
    """Today's date in FRED's calendar (the date its new vintages carry)."""
    return now.astimezone(FRED_TZ).date()


class FredParams(Params):
    """Series to fetch and, optionally, a window of observation dates and of vintages (real time).

    With neither window the job is incremental: each series picks up the vintages (new and revised
    observations) published since its cursor. With a window the job fetches exactly that, and leaves
    the cursors alone.
    """

    series: tuple[str, ...] = Field(
        DEFAULT_SERIES,
        min_length=1,
        max_length=MAX_SERIES,
        description="FRED series ids (a list, or one comma-separated string)",
    )
    observation_start: date | None = Field(None, description="first observation date (YYYY-MM-DD)")
    observation_end: date | None = Field(None, description="last observation date (YYYY-MM-DD)")
    realtime_start: date | None = Field(None, description="first vintage date (YYYY-MM-DD, from 1776-07-04)")
    realtime_end: date | None = Field(
        None, validate_default=True, description="last vintage date (YYYY-MM-DD; 9999-12-31 for up to now)"
    )

    @field_validator("series", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @field_validator("series")
    @classmethod
    def _series(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for raw in v:
            sid = raw.strip().upper()
            if not SERIES_RE.match(sid):
                raise ValueError(f"{raw!r} is not a FRED series id (letters, digits and underscores, e.g. GDP)")
            out.append(sid)
        return tuple(dict.fromkeys(out))

    @field_validator("realtime_start")
    @classmethod
    def _earliest(cls, v: date | None) -> date | None:
        if v is not None and v.isoformat() < EARLIEST:
            raise ValueError(f"FRED's real time starts at {EARLIEST}")
        return v

    @field_validator("observation_end")
    @classmethod
    def _obs_order(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("observation_start")
        if v is not None and start is not None and v < start:
            raise ValueError(f"must not be before observation_start ({start})")
        return v

    @field_validator("realtime_end")
    @classmethod
    def _rt_pair(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("realtime_start")
        if "realtime_start" not in info.data:
            return v  # realtime_start itself was invalid: that error is reported
        if start is None and v is not None:
            raise ValueError("needs realtime_start too (the vintage window has two ends)")
        if start is not None and v is None:
            raise ValueError(f"needs a value when realtime_start is set (e.g. {LATEST} for every vintage since)")
        if start is not None and v is not None and v < start:
            raise ValueError(f"must not be before realtime_start ({start})")
        return v

    @property
    def incremental(self) -> bool:
        return all(
            x is None for x in (self.observation_start, self.observation_end, self.realtime_start, self.realtime_end)
        )
