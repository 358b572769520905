"""The ReliefWeb source: schedule, queue, backfill and plan (windows of changes per stream), fetch and parse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from common.core.errors import BadParams
from common.sources.base import Context, LoadRule, Params, Part, QueueConfig, Raw, Record, Schedule, Source
from common.sources.reliefweb.client import fetch_pages, page_query
from common.sources.reliefweb.params import (
    APPNAME_ENV,
    DEFAULT_APPNAME,
    DEFAULT_LOOKBACK,
    DEFAULT_WINDOW_HOURS,
    INDEX_LAG,
    ReliefWebParams,
    countries_label,
    cursor_name,
    cursor_str,
    utc,
    windows,
)
from common.sources.reliefweb.parse import DISASTERS, REPORTS, parse_pages


class ReliefWeb(Source):
    name = "reliefweb"
    #: ReliefWeb opened in 1996; no report or disaster was changed on it before then.
    earliest = datetime(1996, 1, 1, tzinfo=UTC)
    description = "ReliefWeb humanitarian reports and disasters (OCHA), incremental on the date they last changed"
    schedule = Schedule(cron="17 * * * *", time_zone="UTC")
    # Published quota: 1,000 calls a day per appname and 1,000 items per call. 0.01 parts/s is at most
    # 864 parts a day; an hourly run is one or two calls, so backfills keep most of the day's budget.
    queue = QueueConfig(
        max_dispatches_per_second=0.01,
        max_concurrent_dispatches=1,
        max_attempts=6,
        min_backoff=60,
        max_backoff=1800,
        dispatch_deadline=900,
    )
    http_rate = "30/minute"
    params_model = ReliefWebParams
    default_base_url = "https://api.reliefweb.int/v2"
    schemas = {"reports": REPORTS, "disasters": DISASTERS}
    #: Reports and disasters change after they are published: the newest version of an id replaces the older.
    load_rules = {stream: LoadRule("merge", keys=("id",)) for stream in ("reports", "disasters")}
    demo_params = {"streams": ["reports"], "since": "2024-01-15T00:00:00Z", "until": "2024-01-16T00:00:00Z"}
    backfill_window = timedelta(hours=DEFAULT_WINDOW_HOURS)

    @staticmethod
    def appname(params: ReliefWebParams) -> str:
        """The appname to send: the param, else ``$TRIBUTARY_RELIEFWEB_APPNAME``, else "tributary"."""
        return params.appname or os.environ.get(APPNAME_ENV) or DEFAULT_APPNAME

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        out = super().dedup_params(params, now)
        if "until" not in out:  # "up to now": one job per hour, like the schedule
            out["as_of"] = utc(now).strftime("%Y-%m-%dT%H:00:00Z")
        return out

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, Any]]:
        """One child job per ``backfill_window`` of changes in ``(start, end]``, with explicit since/until.

        Raises:
            BadParams: the range is empty.
        """
        assert isinstance(params, ReliefWebParams)
        if end <= start:
            raise BadParams("the backfill range is empty: end must be after start", field="end")
        base = params.model_dump(mode="json", exclude_none=True, exclude={"since", "until"})
        hours = int(self.backfill_window.total_seconds() // 3600)
        return [
            {**base, "since": cursor_str(lo), "until": cursor_str(hi)}
            for lo, hi in windows(utc(start), utc(end), hours)
        ]

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, ReliefWebParams)
        horizon = (utc(ctx.now) - INDEX_LAG).replace(second=0, microsecond=0)
        until = min(params.until, horizon) if params.until else horizon
        label = countries_label(params.countries)
        appname = self.appname(params)
        specs: list[tuple[str, datetime, datetime, str | None]] = []
        for stream in params.streams:
            name = cursor_name(stream, params.countries)
            known = ctx.state.cursors.get(name)
            known_at = datetime.fromisoformat(known) if known else None
            if params.since is not None:
                after = params.since
            elif known_at is not None:
                after = known_at
            else:
                after = until - DEFAULT_LOOKBACK
            # An explicit window advances the cursor only if it leaves no gap behind it.
            tracks = params.since is None or known_at is None or params.since <= known_at
            for start, end in windows(after, until, params.window_hours):
                specs.append((stream, start, end, name if tracks else None))
        parts = []
        for index, (kind, start, end, cursor) in enumerate(specs):
            key = f"{kind}.{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}" + (f".{label}" if label else "")
            parts.append(
                Part(
                    key=key,
                    index=index,
                    total=len(specs),
                    stream=kind,
                    partition=f"{start:%Y/%m/%d}",
                    cursor=cursor,
                    params={
                        "after": cursor_str(start),
                        "until": cursor_str(end),
                        "countries": list(params.countries),
                        "appname": appname,
                        "page_size": params.page_size,
                        "max_pages": params.max_pages,
                    },
                )
            )
        return parts

    def query(self, part: Part, offset: int) -> list[tuple[str, str | int]]:
        """The GET query of one page: the window filter, a stable sort, the fields, the page."""
        return page_query(part, offset)

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """All pages of the part's window, one JSON body per line (NDJSON) in ``<key>.ndjson``.

        Raises:
            PermanentError: the appname was refused, an error body, or more pages than ``max_pages``.
            TransientError: a body that is not JSON, or the window changed while paging.
        """
        return fetch_pages(part, ctx)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_pages(stream, part.stream, after=part.params.get("after"), until=part.params.get("until"))

    def watermark(self, part: Part, records: int) -> str | None:
        # The whole window is stored (empty or not), so the position is its end.
        return str(part.params["until"]) if part.cursor else None
