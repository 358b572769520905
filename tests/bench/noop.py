"""A no-op source for the whole-stack benchmark (P4): one part, nothing fetched, nothing parsed.

Registered out of tree with ``TRIBUTARY_EXTRA_SOURCES=tests.bench.noop:Noop``, so every job still goes
through the production path (api → Cloud Tasks → ingest → Pub/Sub → status → Firestore) and only the
upstream work is missing: what is left is the pipeline's own cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from common.sources.base import Column, Context, Params, Part, QueueConfig, Raw, Schedule, Source


class NoopParams(Params):
    #: A tag per benchmark run, so each run's jobs are new jobs (job ids are derived from the params).
    run: str = ""
    n: int = 0


class Noop(Source):
    name = "noop"
    description = "benchmark source: one part, nothing fetched or parsed"
    schedule = Schedule(cron="0 0 1 1 *", time_zone="UTC")
    # High rate: the queue must not be what limits the benchmark (500/s is Cloud Tasks' ceiling).
    queue = QueueConfig(
        max_dispatches_per_second=500,
        max_concurrent_dispatches=64,
        max_attempts=5,
        min_backoff=0.5,
        max_backoff=5,
        dispatch_deadline=60,
    )
    params_model = NoopParams
    default_base_url = "http://127.0.0.1:9"  # never contacted
    schemas = {"default": (Column("n", "INT64"),)}

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, NoopParams)
        return [Part(key=f"{params.run or 'run'}-{params.n}", params={"n": params.n})]

    def fetch(self, part: Part, ctx: Context) -> Raw:
        path = ctx.workdir / f"{part.key}.bin"
        path.write_bytes(b"")
        return Raw(path=path, size=0, name=path.name)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[dict[str, Any]]:
        return iter(())
