"""The FRED source: schedule, queue, plan (one part per series), fetch and parse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from common.core.errors import (
    ConfigError,
    PermanentError,
)
from common.sources.base import (
    Context,
    LoadRule,
    Params,
    Part,
    QueueConfig,
    Raw,
    Record,
    Schedule,
    Source,
)
from common.sources.fred.client import fetch_answers
from common.sources.fred.params import EARLIEST, SECRET, SECRET_ENV, FredParams, fred_today
from common.sources.fred.parse import OBSERVATIONS, parse_answers


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


class Fred(Source):
    name = "fred"
    #: FRED's first real-time date ("the beginning of time" in its docs, params.EARLIEST).
    earliest = datetime(1776, 7, 4, tzinfo=UTC)
    description = "FRED economic series observations with their ALFRED vintages (realtime_start/realtime_end)"
    # Early morning in St. Louis: yesterday's vintages are complete, and 04:15 is clear of the hours
    # that daylight saving skips or repeats.
    schedule = Schedule(cron="15 4 * * *", time_zone="America/Chicago")
    # FRED allows 120 requests/minute per key. One part at a time (so the in-process limiter below is
    # the only client of the key) and at most one new part a second; each part makes 1 to a few requests.
    queue = QueueConfig(
        max_dispatches_per_second=1,
        max_concurrent_dispatches=1,
        max_attempts=6,
        min_backoff=60,  # a 429 outlives FRED's one-minute window
        max_backoff=900,
        max_doublings=4,
        dispatch_deadline=600,
    )
    http_rate = "120/minute"
    secrets = (SECRET,)
    params_model = FredParams
    default_base_url = "https://api.stlouisfed.org"
    schemas = {"observations": OBSERVATIONS}
    #: An observation is one (series, date, vintage): a revision replaces its row, a rerun adds none. Partitioned
    #: by year of the observation date (daily series reach back to 1954: BigQuery caps a table's partitions).
    load_rules = {
        "observations": LoadRule(
            "merge", keys=("series_id", "date", "realtime_start"), partition="date", partition_type="YEAR"
        )
    }
    demo_params = {"series": ["DFF", "GDP"]}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, object]:
        """Incremental jobs are one per FRED day; a window that reaches today is re-asked each day."""
        assert isinstance(params, FredParams)
        out = super().dedup_params(params, now)
        today = fred_today(now)
        if params.incremental:
            out["through"] = (today - timedelta(days=1)).isoformat()
        elif params.realtime_end is None or params.realtime_end >= today:
            out["as_of"] = today.isoformat()
        return out

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, Any]]:
        """One child job over the vintages of ``[start, end)``: the values current on its first day and
        every vintage published until its last. Its parts cut the window under FRED's vintage cap
        themselves, so splitting the range into more jobs would only add overlapping snapshots.
        """
        assert isinstance(params, FredParams)
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        base = params.model_dump(mode="json", exclude_none=True, exclude={"realtime_start", "realtime_end"})
        return [{**base, "realtime_start": first.isoformat(), "realtime_end": max(first, last).isoformat()}]

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """One part per series. Incremental parts cover the vintages after the series' cursor up to yesterday.

        Raises:
            PermanentError: a stored cursor is not a date.
        """
        assert isinstance(params, FredParams)
        yesterday = (fred_today(ctx.now) - timedelta(days=1)).isoformat()
        obs = {"observation_start": _iso(params.observation_start), "observation_end": _iso(params.observation_end)}
        parts = []
        for index, sid in enumerate(params.series):
            if params.incremental:
                after = _cursor(ctx.state.cursors.get(sid), sid)
                start = after or EARLIEST
                window = {"realtime_start": start, "realtime_end": max(yesterday, start), "after": after}
                # Named by where the window starts, not where it ends: a job that fails (so the cursor
                # stays put) is redone into the same object, a superset, never beside it.
                key, cursor = (f"{sid}.after_{after}" if after else f"{sid}.full"), sid
            else:
                rt_start, rt_end = _iso(params.realtime_start), _iso(params.realtime_end)
                window = {"realtime_start": rt_start, "realtime_end": rt_end, "after": None}
                key = f"{sid}.rt_{rt_start}_{rt_end}" if rt_start else f"{sid}.current"
                if params.observation_start or params.observation_end:
                    key += f".obs_{obs['observation_start'] or 'first'}_{obs['observation_end'] or 'last'}"
                cursor = None
            parts.append(
                Part(
                    key=key,
                    index=index,
                    total=len(params.series),
                    stream="observations",
                    partition=sid,
                    cursor=cursor,
                    params={"series_id": sid, **window, **obs},
                )
            )
        return parts

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """The part's FRED answers, one per NDJSON line: vintage dates first, then observation pages.

        A real-time window is cut so no request holds more than 2000 vintage dates (FRED's cap), and an
        incremental part with no vintage since its cursor asks for no observations at all.

        Raises:
            ConfigError: the API key is not set.
            PermanentError: FRED refused the key, the series does not exist, or another 4xx / error body.
            TransientError: 429, 5xx, timeouts, or an answer that changed while paging.
        """
        key = ctx.secrets.get(SECRET)
        if not key:
            raise ConfigError(f"secret {SECRET} is not set (env {SECRET_ENV}; needed by source {self.name})")
        return fetch_answers(part, ctx, key)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_answers(stream, part)

    def watermark(self, part: Part, records: int) -> str | None:
        """Incremental parts: the last vintage date now stored (the end of the part's window)."""
        return str(part.params["realtime_end"]) if part.cursor else None


def _cursor(value: str | None, sid: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise PermanentError(f"the stored cursor of FRED series {sid} is not a date: {value!r}") from None
