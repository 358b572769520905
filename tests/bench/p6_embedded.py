"""P6 and P8: the embedded executor (SQLite state, embedded dispatch and events) in this process.

P6 runs N no-op jobs (``tests.bench.noop``) through the whole path: ``submit`` (validate, create the job,
enqueue its task) → a worker claims the task → ``run_task`` → events through the embedded bus → the job
``succeeded`` in SQLite. :func:`embedded_noop_jobs` is the function other benchmarks call for the embedded
peer. P8 backfills one GDELT day (96 slots) from a recorded-response server and reports slots/s and the
CPU seconds this process spent per slot (the replay server's own CPU is not counted).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

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


def p8_backfill(ctx: Context) -> Section:
    """P8: a one-day GDELT backfill (96 slots) on the embedded executor."""
    from common.embedded.queue import SqliteDispatcher
    from common.local.ports import free_port
    from common.local.samples import HERE as SAMPLES
    from common.runtime import executors
    from common.runtime.api import handle
    from common.runtime.worker import Executor
    from common.settings import use_settings
    from tests.sources.gdelt_helpers import gdelt_replay_dir, slot_csv

    sec = Section("P8", "Embedded executor: a one-day GDELT backfill (96 slots)")
    sample = SAMPLES / "gdelt" / "20240115120000.export.CSV"
    csv_dir = ctx.workdir / "p8-csv"
    csv_dir.mkdir(exist_ok=True)
    day = [slot_csv(csv_dir, f"20240116{h:02d}{m:02d}00", sample) for h in range(24) for m in (0, 15, 30, 45)]
    root = gdelt_replay_dir(ctx.workdir / "p8-replay", day)
    port = free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "common.local.recorded", "--root", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["TRIBUTARY_GDELT_BASE_URL"] = f"http://127.0.0.1:{port}/gdelt"
    rates, cpus = [], []
    try:
        time.sleep(1.0)
        for _ in range(ctx.reps(3, 1)):
            s = _settings(ctx.workdir)
            with use_settings(s):
                queue = SqliteDispatcher(s.sqlite_path)
                # The declared 2/s would make this a measure of the pacing (48 s); lifted as an operator could.
                queue.update_queue("gdelt", max_dispatches_per_second=50.0, max_concurrent_dispatches=WORKERS)
                executor = Executor(s).start()
                try:
                    body = orjson.dumps({"source": "gdelt", "start": "2024-01-16", "end": "2024-01-16"})
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    answer, status, _ = handle(
                        "POST", "/v1/backfills", query={}, headers={"content-type": "application/json"}, body=body
                    )
                    assert status == 202 and answer["total"] == 96, answer
                    _wait_all(executors.state(s), {"batch_id": answer["batch_id"]}, 96, 300)
                    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                finally:
                    executor.stop()
            rates.append(96 / seconds)
            cpus.append(cpu / 96)
    finally:
        replay.terminate()
        replay.wait(10)
        os.environ.pop("TRIBUTARY_GDELT_BASE_URL", None)
    from tests.bench.core import Stat

    rate, cpu = Stat(rates, "slots/s"), Stat(cpus, "CPU s/slot")
    sec.rows.append(Row("P8", "one GDELT day, 96 slots, embedded", rate.fmt(), "", "", "", None))
    sec.rows.append(Row("P8", "CPU per slot (this process)", cpu.fmt(), "", "", "", None))
    sec.method = (
        "`POST /v1/backfills` for 2024-01-16 through the api's router in this process (the planner reads the "
        "replayed master list once), on a fresh SQLite file per run; the executor's workers fetch each slot "
        "from a recorded-response server in a child process (the bundled sample served as 96 slots), verify, "
        "parse and write raw + Parquet. The gdelt queue is lifted to 50/s and 8 concurrent (its declared 2/s "
        "would measure the pacing). CPU is `time.process_time()` of this process over the run: api, "
        "workers, bus and SQLite, not the replay server."
    )
    return sec
