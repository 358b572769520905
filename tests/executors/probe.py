"""A test source for the executors: it fails on demand (transient N times, or permanently), sleeps on demand,
and writes ``rows`` rows, so retries, kill -9 and duplicate deliveries can be checked on real outputs.

Registered with ``TRIBUTARY_EXTRA_SOURCES=tests.executors.probe:Probe``; every fetch is counted in
``PROBE_DIR`` (one line per fetch in ``<job key>.fetches``), which the tests read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from common.core.errors import PermanentError, TransientError
from common.sources.base import Column, Context, Params, Part, QueueConfig, Raw, Schedule, Source


class ProbeParams(Params):
    run: str = ""
    rows: int = 3
    #: Fail the first ``fail_times`` fetches with this kind of error ("" never fails).
    fail: Literal["", "transient", "permanent"] = ""
    fail_times: int = 0
    #: Seconds each fetch sleeps (a job long enough to kill its worker mid-way).
    sleep: float = 0.0


class Probe(Source):
    name = "probe"
    description = "test source: fails, sleeps and counts its fetches on demand"
    schedule = Schedule(cron="0 0 1 1 *", time_zone="UTC")
    queue = QueueConfig(
        max_dispatches_per_second=100,
        max_concurrent_dispatches=8,
        max_attempts=3,
        min_backoff=0.2,
        max_backoff=1.0,
        max_doublings=2,
        dispatch_deadline=60,
    )
    params_model = ProbeParams
    default_base_url = "http://127.0.0.1:9"  # never contacted
    schemas = {"default": (Column("n", "INT64"),)}

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, ProbeParams)
        return [Part(key=params.run or "run", params=params.model_dump())]

    def fetch(self, part: Part, ctx: Context) -> Raw:
        p = ProbeParams.model_validate(part.params)
        fetches = _count(part.key)
        if p.sleep:
            time.sleep(p.sleep)
        if p.fail and fetches <= p.fail_times:
            if p.fail == "transient":
                raise TransientError(f"probe: transient failure {fetches} of {p.fail_times}")
            raise PermanentError("probe: permanent failure")
        path = ctx.workdir / f"{part.key}.txt"
        path.write_text("".join(f"{i}\n" for i in range(p.rows)))
        return Raw(path=path, size=path.stat().st_size, name=path.name)

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[dict[str, Any]]:
        for line in stream.read().decode().split():
            yield {"n": int(line)}


def _count(key: str) -> int:
    """Record one fetch of ``key``; returns how many there have been (this one included)."""
    folder = Path(os.environ.get("PROBE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{key}.fetches").open("a+") as f:
        f.write("x\n")
        f.seek(0)
        return len(f.read().split())


def fetches(folder: Path, key: str) -> int:
    """How many times ``key`` was fetched."""
    path = folder / f"{key}.fetches"
    return len(path.read_text().split()) if path.exists() else 0
