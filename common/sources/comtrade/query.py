"""UN Comtrade's queries: the periods a job fetches, reporter batches sized under the record cap, and splits."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from common.sources.comtrade.params import AGGREGATE_CMD_ESTIMATE, ALL_ESTIMATE, ANNUAL_RE, MONTHLY_RE, ComtradeParams

# ------------------------------------------------------------------------------------------ periods


def period_index(period: str) -> int:
    """Periods as consecutive integers: a year, or year*12 + month - 1."""
    return int(period) if len(period) == 4 else int(period[:4]) * 12 + int(period[4:]) - 1


def period_of(index: int, freq: str) -> str:
    return str(index) if freq == "A" else f"{index // 12:04d}{index % 12 + 1:02d}"


def display_period(period: str) -> str:
    """The cursor form of a period: ``2023`` or ``2023-01`` (so annual and monthly compare sensibly)."""
    return period if len(period) == 4 else f"{period[:4]}-{period[4:]}"


def api_period(cursor: str) -> str:
    return cursor.replace("-", "")


def latest_period(freq: str, now: datetime) -> str:
    """The newest period that can have data: last year (annual) or last month (monthly)."""
    now = now.astimezone(UTC)
    if freq == "A":
        return str(now.year - 1)
    return period_of(now.year * 12 + now.month - 2, "M")


def periods_to_fetch(params: ComtradeParams, cursor: str | None, now: datetime) -> list[str]:
    """The job's periods: ``start..end``, or (incremental) the last ``revision_periods`` before the
    cursor and everything after it, up to the latest period; without a cursor, the last ``initial_periods``."""
    if params.start is not None:
        first, last = period_index(params.start), period_index(params.end or params.start)
    else:
        last = period_index(latest_period(params.freq, now))
        if cursor is None or not (ANNUAL_RE if params.freq == "A" else MONTHLY_RE).match(cursor):
            first = last - params.initial_periods + 1  # no (readable) cursor: start afresh
        else:
            first = min(period_index(api_period(cursor)) + 1 - params.revision_periods, last)
    return [period_of(i, params.freq) for i in range(first, last + 1)]


# ------------------------------------------------------------------------------------------ queries


def join_codes(values: tuple[Any, ...] | None) -> str | None:
    return None if values is None else ",".join(str(v) for v in values)


def selection(params: ComtradeParams) -> dict[str, str]:
    """The query items every part of the job shares (all but reporterCode and period)."""
    items = {
        "partnerCode": join_codes(params.partners),
        "partner2Code": join_codes(params.partner2),
        "cmdCode": join_codes(params.cmd_codes),
        "flowCode": join_codes(params.flows),
        "motCode": join_codes(params.mot_codes),
        "customsCode": join_codes(params.customs_codes),
    }
    return {k: v for k, v in items.items() if v is not None}


def digest(*values: Any) -> str:
    return hashlib.sha1(orjson.dumps(values, option=orjson.OPT_SORT_KEYS), usedforsecurity=False).hexdigest()[:10]


def reporters_label(batch: tuple[int, ...]) -> str:
    if len(batch) <= 8:
        return "r" + "_".join(str(c) for c in batch)
    return f"r{batch[0]}-{batch[-1]}n{len(batch)}h{digest(batch)[:6]}"


def estimate_per_reporter(params: ComtradeParams) -> int:
    """An upper estimate of the records one reporter yields for one period."""
    total = sum(AGGREGATE_CMD_ESTIMATE.get(c, 1) for c in params.cmd_codes)
    for name, values in (
        ("partnerCode", params.partners),
        ("flowCode", params.flows),
        ("partner2Code", params.partner2),
        ("motCode", params.mot_codes),
        ("customsCode", params.customs_codes),
    ):
        total *= ALL_ESTIMATE[name] if values is None else len(values)
    return total


def reporter_batches(params: ComtradeParams) -> list[tuple[int, ...]]:
    """Reporters in fixed-size batches, small enough that a call should stay under the record cap."""
    size = max(1, min(params.reporters_per_call, params.max_records_per_call // estimate_per_reporter(params)))
    r = params.reporters
    return [r[i : i + size] for i in range(0, len(r), size)]


def split_query(query: dict[str, str]) -> list[dict[str, str]]:
    """Two halves of a query along its first multi-valued dimension; [] when it cannot be split."""
    for name in ("reporterCode", "flowCode", "partnerCode", "cmdCode", "partner2Code", "motCode", "customsCode"):
        values = query.get(name, "").split(",")
        if len(values) > 1:
            mid = len(values) // 2
            return [{**query, name: ",".join(half)} for half in (values[:mid], values[mid:])]
    return []
