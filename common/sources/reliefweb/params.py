"""ReliefWeb's params model: streams, countries and the window of changes a job asks for, cut into windows."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from common.sources.base import Params

#: The appname ReliefWeb asks every caller to send (not a secret). Since 1 Nov 2025 it must be
#: pre-approved by ReliefWeb; set an approved one as ``params.appname`` or in this variable.
APPNAME_ENV = "TRIBUTARY_RELIEFWEB_APPNAME"
DEFAULT_APPNAME = "tributary"
#: ReliefWeb refuses ``limit`` above 1000 ("Valid values are between 0 and 1000").
MAX_LIMIT = 1000
DEFAULT_MAX_PAGES = 20
#: A document changed a moment ago may not be searchable yet: windows end this long before now,
#: so the cursor never passes a change the search index has not caught up with.
INDEX_LAG = timedelta(minutes=15)
#: How far back the very first incremental run (no cursor, no ``since``) looks.
DEFAULT_LOOKBACK = timedelta(days=1)
DEFAULT_WINDOW_HOURS = 24 * 7
#: Cursor format: fixed width and always UTC, so string order is time order.
CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
ISO3_RE = re.compile(r"^[A-Za-z]{3}$")
APPNAME_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,100}$")

Stream = Literal["reports", "disasters"]


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def cursor_str(when: datetime) -> str:
    return utc(when).strftime(CURSOR_FORMAT)


class ReliefWebParams(Params):
    """A window of ``date.changed`` per stream: ``(since, until]``; both default to "incremental"."""

    streams: tuple[Stream, ...] = Field(("reports", "disasters"), min_length=1, description="reports, disasters")
    since: datetime | None = Field(None, description="changed strictly after (UTC); default: the stream's cursor")
    until: datetime | None = Field(None, description="changed at or before (UTC); default: now minus the index lag")
    countries: tuple[str, ...] = Field((), description="ISO3 codes to filter on (country.iso3); default: all")
    appname: str | None = Field(None, description=f"pre-approved ReliefWeb appname; default ${APPNAME_ENV}")
    window_hours: int = Field(DEFAULT_WINDOW_HOURS, ge=1, le=24 * 31, description="one part per window")
    page_size: int = Field(MAX_LIMIT, ge=1, le=MAX_LIMIT, description="items per call (ReliefWeb max 1000)")
    max_pages: int = Field(DEFAULT_MAX_PAGES, ge=1, le=200, description="guard: calls per part")

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return None if v is None else utc(v).replace(microsecond=0)

    @field_validator("countries")
    @classmethod
    def _iso3(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not ISO3_RE.match(c)]
        if bad:
            raise ValueError(f"must be ISO 3166 alpha-3 codes like 'npl'; not {', '.join(map(repr, bad))}")
        return tuple(sorted({c.lower() for c in v}))

    @field_validator("appname")
    @classmethod
    def _appname(cls, v: str | None) -> str | None:
        if v is not None and not APPNAME_RE.match(v):
            raise ValueError("must be 1-100 characters: letters, digits and . _ @ : -")
        return v

    @field_validator("until")
    @classmethod
    def _after_since(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if v is not None and since is not None and v <= since:
            raise ValueError("must be after since")
        return v


def countries_label(codes: tuple[str, ...]) -> str:
    """A short, deterministic name for a country filter (part keys and cursor names)."""
    if len(codes) <= 3:
        return "-".join(codes)
    return f"{len(codes)}c-{hashlib.sha1(','.join(codes).encode()).hexdigest()[:8]}"


def cursor_name(stream: str, countries: tuple[str, ...]) -> str:
    """The cursor a stream advances: one per stream and country filter."""
    return f"{stream}:{','.join(countries)}" if countries else stream


def windows(after: datetime, until: datetime, hours: int) -> Iterator[tuple[datetime, datetime]]:
    """``(after, until]`` cut into consecutive half-open windows of at most ``hours``."""
    step = timedelta(hours=hours)
    start = after
    while start < until:
        end = min(start + step, until)
        yield start, end
        start = end
