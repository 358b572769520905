"""The UN Comtrade source: schedule, queue, plan (one part per period and reporter batch), fetch and parse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from common.core.errors import BadParams, ConfigError
from common.sources.base import Context, Params, Part, QueueConfig, Raw, Record, Schedule, Source
from common.sources.comtrade.client import fetch_answers
from common.sources.comtrade.params import DAILY_CALL_QUOTA, SECRET, STREAM, ComtradeParams
from common.sources.comtrade.parse import COLUMNS, parse_answers
from common.sources.comtrade.query import (
    digest,
    display_period,
    join_codes,
    periods_to_fetch,
    reporter_batches,
    reporters_label,
    selection,
)


class Comtrade(Source):
    name = "comtrade"
    #: UN Comtrade's annual series start in 1962.
    earliest = datetime(1962, 1, 1, tzinfo=UTC)
    description = "UN Comtrade final trade data (goods and services), annual and monthly, by reporter and partner"
    # Comtrade publishes as countries report (continuously); a daily look at the newest periods is plenty.
    schedule = Schedule(cron="30 6 * * *", time_zone="UTC")
    # One call at a time, spaced out: the free key allows ~500 calls a day and answers bursts with 429.
    queue = QueueConfig(
        max_dispatches_per_second=0.1,
        max_concurrent_dispatches=1,
        max_attempts=5,
        min_backoff=60,
        max_backoff=3600,
        max_doublings=4,
        dispatch_deadline=1800,
    )
    secrets = (SECRET,)
    params_model = ComtradeParams
    default_base_url = "https://comtradeapi.un.org"
    schemas = {STREAM: COLUMNS}
    memory = "1Gi"
    #: comtradr (rOpenSci) paces at 10 calls a minute by default; Retry-After on 429 is honoured on top.
    http_rate = "10/minute"
    demo_params = {"freq": "A", "reporters": [156, 842], "start": "2022"}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        out = super().dedup_params(params, now)
        if out.get("start") is None:  # incremental: one job per day
            out["as_of"] = now.astimezone(UTC).strftime("%Y-%m-%d")
        return out

    def cursor_key(self, params: ComtradeParams, batch: tuple[int, ...]) -> str:
        """The incremental position of one reporter batch: per type, frequency, classification and selection."""
        prefix = f"{params.type_code}{params.freq}-{params.classification}"
        return f"{prefix}-{reporters_label(batch)}-{digest(selection(params))}"

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, ComtradeParams)
        shared = selection(params)
        tag = digest(params.type_code, params.freq, params.classification, shared)
        path = f"/data/v1/get/{params.type_code}/{params.freq}/{params.classification}"
        work: list[tuple[str, tuple[int, ...], str]] = []
        for batch in reporter_batches(params):
            cursor = self.cursor_key(params, batch)
            for period in periods_to_fetch(params, ctx.state.cursors.get(cursor), ctx.now):
                work.append((period, batch, cursor))
        if len(work) > params.max_calls:
            periods = len({w[0] for w in work})
            raise BadParams(
                f"params.max_calls: this job needs {len(work)} calls ({periods} periods x "
                f"{len(work) // max(periods, 1)} reporter batches) but max_calls is {params.max_calls} "
                f"(a free key has about {DAILY_CALL_QUOTA} calls a day): narrow start/end or reporters, "
                "or raise max_calls",
                field="params.max_calls",
            )
        work.sort(key=lambda w: (w[0], w[1]))
        parts = []
        for index, (period, batch, cursor) in enumerate(work):
            query = {
                "reporterCode": join_codes(batch) or "",
                "period": period,
                **shared,
                "includeDesc": "TRUE",
                "maxRecords": str(params.max_records_per_call),
            }
            year, month = period[:4], period[4:]
            parts.append(
                Part(
                    key=f"{params.type_code}{params.freq}-{params.classification}-{period}-{reporters_label(batch)}-{tag}",
                    index=index,
                    total=len(work),
                    stream=STREAM,
                    partition=f"{params.freq}/{year}" + (f"/{month}" if month else ""),
                    cursor=cursor,
                    params={"path": path, "query": query, "period": period, "cap": params.max_records_per_call},
                )
            )
        return parts

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """Every answer of the part as one NDJSON line; an answer at the record cap is split and asked again.

        Raises:
            ConfigError: the subscription key is not set.
            PermanentError: the key is refused, the API answered an error, or a query that cannot be split
                further still reaches the record cap.
            TransientError: 429/5xx/timeouts, or the daily quota is used up (retry after it refills).
        """
        key = ctx.secrets.get(SECRET)
        if not key:
            raise ConfigError(f"secret {SECRET} is not set (needed by source {self.name})")
        return fetch_answers(part, ctx, key)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_answers(stream, label=part.key)

    def watermark(self, part: Part, records: int) -> str | None:
        """The part's period once it held data (an empty answer means "not published yet": no advance)."""
        return display_period(str(part.params["period"])) if records > 0 else None
