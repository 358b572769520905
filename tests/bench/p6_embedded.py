"""P6: the embedded executor (SQLite state, embedded dispatch and events) in this process.

P6 runs N no-op jobs (``tests.bench.noop``) through the whole path: ``submit`` (validate, create the job,
enqueue its task) → a worker claims the task → ``run_task`` → events through the embedded bus → the job
``succeeded`` in SQLite. :func:`embedded_noop_jobs` is the function other benchmarks call for the embedded
peer; P8's embedded column (``tests.bench.p8_backfill``) uses its settings.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.core import Context, Ratio, Row, Section, measure, measure_interleaved

#: P6's goal: the embedded executor at least twice a bare Celery worker's no-op rate.
GOAL = 2.0

#: Worker threads of the embedded executor under test (the default of TRIBUTARY_EMBEDDED_WORKERS).
WORKERS = 8


def _settings(workdir: Path, **extra: Any) -> Any:
    from common.settings import Settings

    base = Settings.from_env()
    return base.model_copy(
        update={
            "profile": "embedded",
            "sqlite_path": str(workdir / f"{uuid.uuid4().hex[:8]}.sqlite"),
            "output_uri": (workdir / "data").as_uri(),
            "embedded_load": False,  # the pipeline's own cost, as P4 (whose stack loads in another process)
            **extra,
        }
    )


def _wait_all(store: Any, filters: dict[str, str], n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while store.count_by({**filters, "status": "succeeded"}) < n:
        if store.count_by({**filters, "status": "failed"}):
            raise AssertionError("a job failed")
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {n} jobs succeeded within {timeout:.0f} s")
        time.sleep(0.02)


def embedded_noop_jobs(
    n: int, workdir: Path, *, workers: int = WORKERS, processes: int = 1, timeout: float = 600.0
) -> float:
    """Run ``n`` no-op jobs through the embedded executor (``processes`` worker processes of ``workers`` threads)
    on a fresh SQLite file; returns jobs/s (first submit to last success; the processes start before). The no-op
    source must be registered (``TRIBUTARY_EXTRA_SOURCES=tests.bench.noop:Noop``).

    Raises:
        AssertionError: a job failed, or they did not all succeed within ``timeout``.
    """
    from common.runtime import executors
    from common.runtime.api.handlers import submit
    from common.runtime.worker import Executor
    from common.settings import use_settings

    s = _settings(workdir)
    run = uuid.uuid4().hex[:8]
    with use_settings(s):
        executor = Executor(s, workers=workers, processes=processes).start()
        try:
            store = executors.state(s)
            started = time.perf_counter()
            for i in range(n):
                submit("noop", {"run": run, "n": i}, trigger="bench")
            _wait_all(store, {"source": "noop"}, n, timeout)
            return n / (time.perf_counter() - started)
        finally:
            executor.stop()


def p6_embedded(ctx: Context) -> Section:
    """P6: no-op jobs through the embedded executor against a bare Celery + Redis worker, interleaved."""
    from common.core.errors import ConfigError
    from common.local.redis import RedisServer
    from tests.bench.p6_p7_celery import bare_celery, bare_celery_noop_seconds

    sec = Section("P6", "Embedded executor against bare Celery: no-op jobs through SQLite state")
    n = 200 if ctx.quick else 1_000
    cores = os.cpu_count() or 1
    embedded_noop_jobs(50, ctx.workdir)  # warm-up: imports, the first SQLite file
    # As many processes as the peer's prefork pool (concurrency = cores), each with the default threads.
    ours = lambda: n / embedded_noop_jobs(n, ctx.workdir, processes=cores)  # noqa: E731 (seconds of one run)
    try:
        with RedisServer() as redis, bare_celery(ctx, redis.url, cores) as app:
            bare_celery_noop_seconds(app, min(n, 200))  # warm-up of the pool, its imports and connections
            seconds = measure_interleaved(
                {"ours": ours, "peer": lambda: bare_celery_noop_seconds(app, n)}, ctx.reps(3, 1)
            )
    except ConfigError as exc:  # no redis-server: the embedded figure alone, and why
        rate = measure(lambda: n / ours(), ctx.reps(3, 1), unit="jobs/s")
        label = f"{n:,} no-op jobs, embedded, {cores} processes of {WORKERS} threads"
        sec.rows.append(Row("P6", label, rate.fmt(), "", "",
                            f"≥{GOAL:.0f}x bare Celery (peer not measured: {exc})", None))  # fmt: skip
        return sec
    rates = {name: st.map(lambda t: n / t, "jobs/s" if name == "ours" else "tasks/s") for name, st in seconds.items()}
    r = Ratio.of(rates["ours"], rates["peer"])
    sec.rows.append(
        Row("P6", f"{n:,} no-op jobs, embedded ({cores} processes of {WORKERS} threads) vs bare Celery + Redis "
            f"({cores} processes)",
            rates["ours"].fmt(), rates["peer"].fmt(), r.fmt(), f"≥{GOAL:.0f}x bare Celery", r.value >= GOAL)
    )  # fmt: skip
    sec.method = (
        f"**ours**: `tributary serve`'s executor (`common.runtime.worker.Executor`) with {cores} processes of "
        f"{WORKERS} worker threads (this one and {cores - 1} spawned, as `TRIBUTARY_EMBEDDED_PROCESSES={cores}`: "
        f"the peer's pool size) on a fresh SQLite file (WAL) per run, started before the clock. The main thread "
        f"calls the api's `submit` for each of {n:,} no-op jobs (validate, create the job, enqueue its task) "
        "while the workers claim and run them; each job's `started` and `succeeded` events are applied to it by "
        "the embedded bus. The clock "
        "runs from the first submit to the last job seen `succeeded`. Nothing is fetched; a no-op job still writes "
        f"its (empty) raw and Parquet objects to a local folder. **peer**: a bare Celery worker "
        f"(`tests.bench.celery_bare`, prefork, concurrency {cores}, `acks_late`) on a Redis of its own, {n:,} "
        "no-op tasks sent and every result read back. Runs are interleaved after a warm-up of each."
    )
    return sec
