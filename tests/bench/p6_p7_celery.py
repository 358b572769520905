"""P6's bare-Celery baseline and P7: 1,000 no-op jobs through Tributary's Celery executor (the ``celery``
profile) against a bare Celery worker doing 1,000 no-op tasks with results, both on one real Redis.

:func:`bare_celery_noop_rate` is the reusable baseline (P6's peer); :func:`tests.bench.celery_profile.
celery_noop_jobs` is Tributary's side of P7. Each worker is the documented command (``celery -A … worker
--pool=prefork``, concurrency = cores), started once and warmed up; runs are interleaved. Every measure
starts its own Redis and its own Celery apps, so it does not depend on which measures ran before it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.bench.celery_profile import (
    RUN_TIMEOUT,
    celery_noop_jobs,
    own_cpu,
    tree_cpu,
    tributary_celery,
    wait_succeeded,
    worker,
)
from tests.bench.core import Context, Ratio, Row, Section, Stat, measure_interleaved, profile, timed

GOAL = 0.8
#: The no-op source's Celery queue (``ingest-<source>``).
NOOP_QUEUE = "ingest-noop"


def bare_celery_noop_seconds(app: Any, n: int) -> float:
    """Seconds for a bare Celery worker to run ``n`` no-op tasks sent now, every result read back."""
    from celery.result import ResultSet

    from tests.bench.celery_bare import QUEUE, TASK

    start = time.perf_counter()
    results = ResultSet([app.send_task(TASK, queue=QUEUE) for _ in range(n)])
    results.get(timeout=RUN_TIMEOUT)
    seconds = time.perf_counter() - start
    results.forget()
    return seconds


@contextmanager
def bare_celery(ctx: Context, broker_url: str, concurrency: int) -> Iterator[Any]:
    """The bare Celery worker (``tests.bench.celery_bare``) running on ``broker_url``; yields a new app that
    sends to it (see :func:`bare_celery_worker`)."""
    with bare_celery_worker(ctx, broker_url, concurrency) as (app, _):
        yield app


@contextmanager
def bare_celery_worker(ctx: Context, broker_url: str, concurrency: int) -> Iterator[tuple[Any, Any]]:
    """The bare Celery worker running on ``broker_url``; yields a new app that sends to it (closed at the end:
    nothing of it outlives this measure's Redis) and the worker's process. This process's environment is
    left as it was."""
    from tests.bench.celery_bare import QUEUE, make_app

    argv = [sys.executable, "-m", "celery", "-A", "tests.bench.celery_bare", "worker", "--pool=prefork"]
    argv += [f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle", "-Q", QUEUE]
    env = {"BENCH_CELERY_BROKER_URL": broker_url, "PYTHONPATH": str(ctx.repo)}
    app = make_app(broker_url)
    try:
        with worker(argv, env, ctx.workdir / "bare-worker.log", ctx.repo) as proc:
            yield app, proc
    finally:
        app.close()


def bare_celery_noop_rate(ctx: Context, n: int = 1_000, repeats: int = 3, concurrency: int | None = None) -> Stat:
    """P6's peer, reusable: a bare Celery + Redis worker doing ``n`` no-op tasks with results (acks_late,
    concurrency = cores) on a Redis of its own; returns the tasks/s.

    Raises:
        common.core.errors.ConfigError: redis-server is missing, or a server did not start.
    """
    from common.local.redis import RedisServer

    cores = concurrency or os.cpu_count() or 1
    with RedisServer() as redis, bare_celery(ctx, redis.url, cores) as app:
        bare_celery_noop_seconds(app, min(n, 200))  # warm-up: the pool's first tasks, the connections
        seconds = measure_interleaved({"bare": timed(lambda: bare_celery_noop_seconds(app, n))}, repeats)
    return seconds["bare"].map(lambda s: n / s, "tasks/s")


def p6_p7_celery(ctx: Context) -> Section:
    """P7: no-op jobs through the celery profile against the bare Celery worker, interleaved."""
    from common.local.redis import RedisServer

    sec = Section("P7", "Tributary's Celery executor against bare Celery (1,000 no-op jobs)")
    n = 300 if ctx.quick else 1_000
    cores = os.cpu_count() or 1
    cpu: dict[str, list[float]] = {"ours": [], "peer": []}
    commands: dict[str, list[float]] = {"ours": [], "peer": []}
    with (
        RedisServer() as redis,
        bare_celery_worker(ctx, redis.url, cores) as (app, bare_proc),
        tributary_celery(ctx, redis.url, cores, [NOOP_QUEUE]) as ours,
    ):

        def counted(name: str, pid: int, run: Any) -> Any:
            def one() -> float:
                c0, r0 = tree_cpu(pid) + own_cpu(), redis_commands(redis.url)
                seconds = run()
                cpu[name].append((tree_cpu(pid) + own_cpu() - c0) / n)
                commands[name].append((redis_commands(redis.url) - r0) / n)
                return float(seconds)

            return one

        bare_celery_noop_seconds(app, min(n, 200))  # warm-up of both pools, their imports and connections
        celery_noop_jobs(ours, min(n, 200))
        seconds = measure_interleaved(
            {
                "ours": counted("ours", ours.proc.pid, lambda: celery_noop_jobs(ours, n)),
                "peer": counted("peer", bare_proc.pid, lambda: bare_celery_noop_seconds(app, n)),
            },
            ctx.reps(3, 2),
        )
        side = worker_side(ours.settings, 200 if ctx.quick else 600, profiled=ctx.do_profile)
    rates = {name: s.map(lambda t: n / t, "jobs/s" if name == "ours" else "tasks/s") for name, s in seconds.items()}
    r = Ratio.of(rates["ours"], rates["peer"])
    sec.rows.append(
        Row("P6", f"bare Celery + Redis, {n:,} no-op tasks with results, {cores} processes (peer)",
            "—", rates["peer"].fmt(), "", "baseline (P6's peer)", None,
            "tests.bench.p6_p7_celery.bare_celery_noop_rate")
    )  # fmt: skip
    sec.rows.append(
        Row("P7", f"{n:,} no-op jobs, Tributary's Celery executor (celery profile) vs bare Celery", rates["ours"].fmt(),
            rates["peer"].fmt(), r.fmt(), f"≥{GOAL:.0%} of bare Celery", r.value >= GOAL)
    )  # fmt: skip
    cpu_ms = {name: Stat(values, "ms").map(lambda v: v * 1000, "ms") for name, values in cpu.items()}
    sec.rows.append(
        Row("P7", "CPU per job (worker processes + this process)", cpu_ms["ours"].fmt(), cpu_ms["peer"].fmt(),
            Ratio.of(cpu_ms["ours"], cpu_ms["peer"]).fmt(), "", None)
    )  # fmt: skip
    per_job = {name: Stat(values, "commands") for name, values in commands.items()}
    sec.rows.append(
        Row("P7", "Redis commands per job (both sides, INFO total_commands_processed)", per_job["ours"].fmt(),
            per_job["peer"].fmt(), Ratio.of(per_job["ours"], per_job["peer"]).fmt(), "", None)
    )  # fmt: skip
    sec.method = (
        f"One `redis-server` of our own (loopback, nothing saved) is the broker of both workers, each the "
        f"documented `celery -A … worker --pool=prefork --concurrency={cores}` (the cores), with `acks_late`, "
        "`reject_on_worker_lost` and prefetch 1. **peer** (P6's baseline, `bare_celery_noop_rate`): "
        f"`tests.bench.celery_bare`, {n:,} `send_task` of a no-op task and every result read back from Redis. "
        f"**ours**: the `celery` profile as a user runs it (`TRIBUTARY_PROFILE=celery`: Celery dispatch, SQLite "
        "state, embedded events; `tests.bench.celery_profile`): this process calls the api's `submit` for each "
        f"of {n:,} no-op jobs (`tests.bench.noop`: validate, create the job `queued` in SQLite, claim the task "
        "id and mark it pending in one Lua call (`SET NX`, `SADD`), send the Celery task with "
        "`ignore_result`), and Tributary's worker (`common.runtime.workers.celery_app`, on the same SQLite "
        "file) runs each through `run_task`: the delivery checked (only a retry or a redelivery is counted in "
        "Redis), the job read (cancelled?), plan, fetch, an empty Parquet file, its schema and the raw object "
        "written to a local folder, the `started` and `succeeded` events stored in the outbox and applied to "
        "the job by the worker process itself, then the task marked finished. Timed from the first submit "
        "until all the run's jobs are `succeeded` in SQLite. The load stage is off "
        "(`TRIBUTARY_EMBEDDED_LOAD=0`), as in P4 and P6. No emulator runs. After a discarded 200-job warm-up "
        "of each, runs are interleaved. CPU per job: user + system seconds of the worker's process tree "
        "(psutil: the main process and its pool) plus this process's (the sender and poller), over the run, "
        "divided by the jobs; Redis's own CPU is not counted, its commands are (the server's count over the "
        "run, divided by the jobs: the idle worker's polls add a few)."
    )
    wall, cpu_in, frames = side
    sec.details = (
        f"Tributary's Celery task function alone (`celery_app.ingest`, called in this process on jobs created in "
        f"the same SQLite file, against the same Redis; no Celery message handling): {wall:.1f} ms wall and "
        f"{cpu_in:.1f} ms CPU per job, one at a time."
    )
    if frames:
        sec.details += "\n\n```\n" + frames + "\n```"
    if r.value < GOAL:
        ours_cpu, peer_cpu = cpu_ms["ours"].median, cpu_ms["peer"].median
        sec.analysis = ANALYSIS.format(ours_cpu=ours_cpu, peer_cpu=peer_cpu, budget=peer_cpu / GOAL)
    return sec


def redis_commands(url: str) -> int:
    """The commands the Redis at ``url`` has processed so far (its own count, including idle workers' polls)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def worker_side(s: Any, n: int, *, profiled: bool) -> tuple[float, float, str]:
    """Tributary's Celery task function (``common.runtime.workers.celery_app.ingest``) called ``n`` times in this
    process on jobs created in the profile's SQLite file, against its Redis: the worker's own cost per job
    without Celery's message handling. Returns (wall ms per job, CPU ms per job, pyinstrument's top frames
    when ``profiled``)."""
    from types import SimpleNamespace

    from common.core.jobs import Job
    from common.core.tasks import TaskPayload
    from common.runtime import executors
    from common.settings import use_settings

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    from common.runtime.workers import celery_app  # sets up the worker's logging: this process keeps its own

    root.setLevel(level)
    root.handlers[:] = handlers

    run = uuid.uuid4().hex[:8]
    task = SimpleNamespace(request=SimpleNamespace(id=None, retries=0, delivery_info={}))
    with use_settings(s):
        store = executors.state(s)
        bodies = []
        for i in range(n):
            params = {"run": run, "n": i}
            job = Job(job_id=f"noop-{run}-{i}", source="noop", params=params, trigger="bench")
            store.create_job(job)
            bodies.append(TaskPayload(job_id=job.job_id, source="noop", params=params).model_dump(mode="json"))
        half = n // 2
        cpu0, t0 = time.process_time(), time.perf_counter()
        for body in bodies[:half]:
            celery_app.ingest(task, body)  # type: ignore[arg-type]
        wall, cpu = (time.perf_counter() - t0) / half * 1000, (time.process_time() - cpu0) / half * 1000
        text = ""
        if profiled:
            text = profile(lambda: [celery_app.ingest(task, b) for b in bodies[half:]], top=60, flat=False)
        wait_succeeded(store, {"source": "noop"}, store.count_by({"source": "noop", "status": "succeeded"}))
    return wall, cpu, text


ANALYSIS = """\
The machine has 2 cores and both sides keep them busy, so the ratio is about the CPU each spends per job
(the CPU row above): the bare task costs {peer_cpu:.1f} ms (Celery's receive, ack and result write, and the
sender), a Tributary job {ours_cpu:.1f} ms. At 0.8x a job could spend at most about {budget:.1f} ms; the task
function alone (details) spends more than that. Where a no-op job's worker-side time goes (`celery_app.ingest` called in
one process, pyinstrument, 300 jobs on a quiet machine: 14.2 ms wall and 13.2 ms CPU per job, profiler
included):

| per job | ms | where |
|---|---|---|
| outputs to the local folder | 4.2 | `LocalStore`: raw object 2.6; `schema.json`, rewritten by every task, 1.6 |
| the two events through the embedded bus | 4.4 | 2.2 per event (below) |
| `source_context` | 2.1 | an httpx client built per task (1.2) and a temporary folder made and removed (0.9) |
| the empty Parquet file | 0.7 | `pq.ParquetWriter` |
| the Celery adapter's Redis calls | 1.6 | `delivered` (0.6) and `finished` (1.0) pipelines |
| the cancel check | 0.2 | `stopped_because` reads the job |

An event costs an outbox `INSERT` transaction, the drain's `SELECT`, `Event.from_bytes` re-reading the event
just written (0.4), `record_event`'s transaction with `Job.model_copy` (a deep copy, 0.4) and the outbox
`DELETE` transaction. An output is a copy, two path resolutions and an atomic rename.

**Fixed in the Celery adapter** (`common/celeryq`, `celery_app`): a first delivery (Celery says it is neither
a retry nor `redelivered`) no longer counts itself in Redis, so `delivered`'s round trip is gone from the
common path (a retry or a lost worker's task is still counted: `tests/executors`); the dispatcher claims a
task id and marks it pending in one round trip (a Lua script) instead of two; and it sends with
`ignore_result` (the worker stores none): Celery's Redis backend subscribed to each sent task's result
channel and unsubscribed when the handle was dropped. Measured before and after (quick P7, back to back):
Redis commands per job 18.1 → 15.1 (the bare peer: 18.0), CPU per job 17.9 → 14.5 ms (a loaded machine: the
CPU figures are rough, the command counts exact).

**Left to the embedded executor's owner** (`runtime/ingest.py`, `common/embedded`), the rest of the table:
the schema object written once per stream rather than per task, the outbox row applied without being
re-parsed and without three separate write transactions, the job updated without a deep copy, and one HTTP
client per process.
"""
