"""The World Bank source: schedule, queue, plan (a part per indicator and country batch that moved), fetch and parse."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from common.sources.base import Context, LoadRule, Params, Part, QueueConfig, Raw, Record, Schedule, Source
from common.sources.worldbank.client import fetch_pages, probe, query_params
from common.sources.worldbank.params import WorldBankParams, batch_label, batches
from common.sources.worldbank.parse import COLUMNS, parse_pages

log = logging.getLogger("tributary.sources.worldbank")


class WorldBank(Source):
    name = "worldbank"
    #: World Development Indicators start in 1960 (each job fetches a series' whole history anyway).
    earliest = datetime(1960, 1, 1, tzinfo=UTC)
    description = "World Bank indicators (WDI and other databases) per country, re-fetched when they are updated"
    # WDI is updated a few times a year; a daily look costs one call per indicator.
    schedule = Schedule(cron="40 5 * * *", time_zone="UTC")
    # No published rate limit: stay polite, one part at a time per second, two in flight.
    queue = QueueConfig(
        max_dispatches_per_second=1,
        max_concurrent_dispatches=2,
        max_attempts=6,
        min_backoff=30,
        max_backoff=1800,
        dispatch_deadline=900,
    )
    http_rate = "60/minute"
    params_model = WorldBankParams
    default_base_url = "https://api.worldbank.org/v2"
    schemas = {"indicators": COLUMNS}
    #: One value per (country, indicator, period): a revised value replaces its row.
    load_rules = {"indicators": LoadRule("merge", keys=("indicator_id", "country_id", "date"))}
    demo_params = {"indicators": ["NY.GDP.PCAP.CD"], "countries": ["BRA", "IND", "NGA"]}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        # The same params on another day is another look at lastupdated: a new job.
        return {**super().dedup_params(params, now), "as_of": now.astimezone(UTC).strftime("%Y-%m-%d")}

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """One part per (indicator, country batch) whose ``lastupdated`` moved past its cursor.

        One cheap call per indicator (``per_page=1``) reads ``lastupdated`` (the date the indicator's
        database was last updated). When nothing moved, the plan is empty: nothing is written.

        Raises:
            PermanentError: the API refused the indicator or a country (its message is kept).
        """
        assert isinstance(params, WorldBankParams)
        groups = batches(params.countries, params.batch_size)
        specs: list[tuple[str, dict[str, Any]]] = []
        for indicator in params.indicators:
            meta = probe(indicator, groups[0], params, ctx)
            lastupdated = meta.get("lastupdated")
            for batch in groups:
                key = ".".join(
                    [indicator, batch_label(batch)]
                    + ([f"{params.start_year}-{params.end_year}"] if params.start_year else [])
                    + ([f"s{params.source}"] if params.source else [])
                )
                known = ctx.state.cursors.get(key)
                if lastupdated and known and lastupdated <= known:
                    log.info("%s: lastupdated %s, already stored (cursor %s)", key, lastupdated, known)
                    continue
                specs.append((key, {"indicator": indicator, "countries": list(batch), "lastupdated": lastupdated}))
        return [
            Part(
                key=key,
                index=index,
                total=len(specs),
                stream="indicators",
                partition=spec["indicator"],
                cursor=key,
                params={**spec, **query_params(params)},
            )
            for index, (key, spec) in enumerate(specs)
        ]

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """Every page of the part, one ``[meta, rows]`` body per line, into ``<key>.ndjson``.

        Raises:
            PermanentError: an in-band API error, or more pages than ``max_pages``.
            TransientError: a body that is not JSON, or the series changed while paging.
        """
        return fetch_pages(part, ctx)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_pages(stream, label=part.key)

    def watermark(self, part: Part, records: int) -> str | None:
        value = part.params.get("lastupdated")
        return str(value) if value else None
