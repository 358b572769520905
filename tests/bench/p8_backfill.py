"""P8: a one-day GDELT backfill (96 real-sized slots from a local recorded-response server) on each executor.

The same day, the same replay folder and the same ``POST /v1/backfills`` on three executors, side by side:

- **embedded**: the api's router and the executor's worker threads in this process, SQLite state;
- **celery**: the ``celery`` profile (``tests.bench.celery_profile``): the api's router here, Tributary's Celery
  worker (prefork, one process per core) on a Redis of its own, SQLite state, embedded events;
- **cloudtasks**: the ``gcp`` profile on the local stack as ``tributary dev up`` starts it (api, ingest and
  status functions; the Cloud Tasks, Pub/Sub and Firestore emulators).

Each reports slots/s (from the POST to the last slot ``succeeded``) and the CPU seconds per slot of the
processes that run Tributary's code; the replay server's CPU is never counted.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from tests.bench.celery_profile import RUN_TIMEOUT, own_cpu, tree_cpu, tributary_celery, wait_succeeded
from tests.bench.core import Context, Ratio, Row, Section, Stat

SLOTS = 96
#: The days served; run ``i`` backfills ``DAYS[i]``, so that a run on a state kept from the previous one
#: (Celery's worker, the local stack) finds new jobs (job ids come from the params).
DAYS = ("2024-01-16", "2024-01-17", "2024-01-18")
#: The gdelt queue's declared 2/s would make the embedded and Cloud Tasks runs a measure of the pacing
#: (48 s); lifted as an operator could (Celery does not pace a queue: its workers run what they get).
RATE, CONCURRENT = 50.0, 8
#: The local stack's start-up and one backfill must fit in this, or its column is skipped (with why).
STACK_BUDGET = 240.0

#: One run of a column: (seconds, CPU seconds, extra CPU seconds by part, for the details).
Run = tuple[float, float, dict[str, float]]


def replay_root(ctx: Context, *, sample: bool = False) -> tuple[Path, str]:
    """The recorded-response folder serving :data:`DAYS`, each slot a real-sized export (P1's slot: the real one
    from ``../shared/fixtures``, else the bundled sample repeated to its size; ``sample``: the 24-row sample, for
    the smoke test); and where the rows come from."""
    from tests.bench.data import base_rows
    from tests.sources.gdelt_helpers import gdelt_replay_dir

    rows, origin = base_rows(sample)
    body = b"".join(rows)
    csv_dir = ctx.workdir / "p8-csv"
    csv_dir.mkdir(exist_ok=True)
    csvs = []
    for day in DAYS:
        for h in range(24):
            for m in (0, 15, 30, 45):
                csv = csv_dir / f"{day.replace('-', '')}{h:02d}{m:02d}00.export.CSV"
                csv.write_bytes(body)
                csvs.append(csv)
    return gdelt_replay_dir(ctx.workdir / "p8-replay", csvs), f"{origin}, {len(rows):,} rows"


@contextmanager
def replay_server(root: Path) -> Iterator[str]:
    """The recorded-response server (a child process) on a free port; yields GDELT's base URL on it, and sets
    ``TRIBUTARY_GDELT_BASE_URL`` in this process for the block (restored after)."""
    from common.local.ports import free_port
    from common.local.processes import wait_until
    from common.local.stack import client_env, tcp_ready

    port = free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "common.local.recorded", "--root", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(tcp_ready(port), "the replay server", 30, replay, None)
        url = f"http://127.0.0.1:{port}/gdelt"
        with client_env({"TRIBUTARY_GDELT_BASE_URL": url}):
            yield url
    finally:
        replay.terminate()
        replay.wait(10)


def post_backfill(day: str) -> str:
    """``POST /v1/backfills`` for ``day`` through the api's router in this process; returns the batch id.

    Raises:
        AssertionError: the api did not accept a 96-slot batch.
    """
    from common.runtime.api import handle

    body = orjson.dumps({"source": "gdelt", "start": day, "end": day})
    answer, status, _ = handle(
        "POST", "/v1/backfills", query={}, headers={"content-type": "application/json"}, body=body
    )
    assert status == 202 and answer["total"] == SLOTS, answer
    return str(answer["batch_id"])


def embedded_run(ctx: Context, day: str) -> Run:
    """One backfill on the embedded executor (a fresh SQLite file); CPU: this whole process."""
    from common.embedded.queue import SqliteDispatcher
    from common.runtime import executors
    from common.runtime.worker import Executor
    from common.settings import use_settings
    from tests.bench.p6_embedded import WORKERS, _settings

    s = _settings(ctx.workdir)
    with use_settings(s):
        SqliteDispatcher(s.sqlite_path).update_queue(
            "gdelt", max_dispatches_per_second=RATE, max_concurrent_dispatches=WORKERS
        )
        executor = Executor(s).start()
        try:
            cpu0, t0 = own_cpu(), time.perf_counter()
            batch = post_backfill(day)
            wait_succeeded(executors.state(s), {"batch_id": batch}, SLOTS)
            return time.perf_counter() - t0, own_cpu() - cpu0, {}
        finally:
            executor.stop()


def celery_runs(ctx: Context, repeats: int) -> list[Run]:
    """Backfills on the celery profile, one day each, on one Redis, worker and SQLite file; CPU: the worker's
    process tree plus this process (the api's router)."""
    from common.local.redis import RedisServer
    from common.runtime import executors
    from common.settings import use_settings

    cores = os.cpu_count() or 1
    runs: list[Run] = []
    with (
        RedisServer() as redis,
        tributary_celery(ctx, redis.url, cores, ["ingest-gdelt"]) as worker,
        use_settings(worker.settings),
    ):
        store = executors.state(worker.settings)
        for day in DAYS[:repeats]:
            w0, c0, t0 = worker.worker_cpu(), own_cpu(), time.perf_counter()
            batch = post_backfill(day)
            wait_succeeded(store, {"batch_id": batch}, SLOTS)
            seconds = time.perf_counter() - t0
            w, c = worker.worker_cpu() - w0, own_cpu() - c0
            runs.append((seconds, w + c, {"worker": w, "api": c}))
    return runs


def cloudtasks_runs(ctx: Context, root: Path, repeats: int, budget: float) -> tuple[list[Run], float]:
    """Backfills through the local stack (gcp profile), each in a new project of the same stack; CPU: the api,
    ingest and status functions (psutil, process trees), the Google emulators' apart. Returns the runs and the
    stack's start-up seconds.

    Raises:
        common.core.errors.ConfigError: the stack could not start (no emulators installed ...).
    """
    import httpx

    from common.gcp.tasks import ensure_queue
    from common.local.stack import Stack, StackConfig, client_env
    from common.sources import get_source

    env = {"PYTHONPATH": str(ctx.repo), "TRIBUTARY_LOG_LEVEL": "WARNING"}
    stack = Stack(
        StackConfig(state_dir=ctx.workdir / "p8-stack", replay_dir=root, auto_ports=True, scheduler=False, env=env)
    )
    began = time.monotonic()
    state = stack.up()
    up = time.monotonic() - began
    functions = ("api", "ingest", "status")
    emulators = ("tasks", "pubsub", "firestore")
    runs: list[Run] = []
    try:
        with client_env(state.env):
            gdelt = get_source("gdelt")
            ensure_queue(gdelt, dataclasses.replace(gdelt.queue, max_dispatches_per_second=RATE,
                                                    max_concurrent_dispatches=CONCURRENT))  # fmt: skip
        with httpx.Client(base_url=state.endpoints["api_url"], timeout=60, trust_env=False) as api:
            while len(runs) < repeats and (not runs or time.monotonic() - began + runs[-1][0] < budget):
                cpu0 = {n: tree_cpu(stack.procs[n].pid) for n in (*functions, *emulators, "load")}
                t0 = time.perf_counter()
                day = DAYS[len(runs)]
                r = api.post("/v1/backfills", json={"source": "gdelt", "start": day, "end": day})
                assert r.status_code == 202 and r.json()["total"] == SLOTS, r.text
                batch = r.json()["batch_id"]
                deadline = time.monotonic() + RUN_TIMEOUT
                while (got := api.get(f"/v1/backfills/{batch}").json())["done"] < SLOTS:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{got['done']} of {SLOTS} slots done within {RUN_TIMEOUT:.0f} s")
                    time.sleep(0.1)
                assert got["counts"]["succeeded"] == SLOTS, got
                seconds = time.perf_counter() - t0
                cpu = {n: tree_cpu(stack.procs[n].pid) - cpu0[n] for n in cpu0}
                runs.append((seconds, sum(cpu[n] for n in functions), cpu))
    finally:
        stack.down()
    return runs, up


def p8_backfill(ctx: Context) -> Section:
    """P8: the one-day backfill on the embedded, Celery and Cloud Tasks executors."""
    from common.core.errors import ConfigError

    sec = Section("P8", "A one-day GDELT backfill (96 slots) on each executor")
    repeats = ctx.reps(3, 1)
    cores = os.cpu_count() or 1
    root, origin = replay_root(ctx)
    columns: dict[str, list[Run]] = {}
    notes: dict[str, str] = {}
    with replay_server(root):
        columns["embedded"] = [embedded_run(ctx, day) for day in DAYS[:repeats]]
        try:
            columns["celery"] = celery_runs(ctx, repeats)
        except ConfigError as exc:  # no redis-server
            notes["celery"] = f"not measured: {exc}"
    up = 0.0
    try:
        columns["cloudtasks"], up = cloudtasks_runs(ctx, root, repeats, STACK_BUDGET)
    except ConfigError as exc:  # no emulators
        notes["cloudtasks"] = f"not measured: {exc}"
    who = {
        "embedded": "this process: api, workers, bus, SQLite",
        "celery": f"worker tree ({cores} pool processes) + this process (api)",
        "cloudtasks": "api, ingest and status functions; emulators apart",
    }
    base = Stat([SLOTS / r[0] for r in columns["embedded"]], "slots/s")
    for name in ("embedded", "celery", "cloudtasks"):
        if name not in columns:
            sec.rows.append(Row("P8", f"one GDELT day, {SLOTS} slots, {name}", "", "", "", "", None, notes[name]))
            continue
        runs = columns[name]
        rate = Stat([SLOTS / r[0] for r in runs], "slots/s")
        cpu = Stat([r[1] / SLOTS for r in runs], "CPU s/slot")
        ratio = "" if name == "embedded" else Ratio.of(rate, base).fmt("x embedded")
        sec.rows.append(Row("P8", f"one GDELT day, {SLOTS} slots, {name}", rate.fmt(), "", ratio, "", None))
        sec.rows.append(Row("P8", f"CPU per slot, {name} ({who[name]})", cpu.fmt(), "", "", "", None))
    sec.method = METHOD.format(
        origin=origin, slots=SLOTS, day=DAYS[0], rate=RATE, concurrent=CONCURRENT, cores=cores, up=up
    )
    details = []
    for name, runs in columns.items():
        for i, (seconds, _, parts) in enumerate(runs):
            if parts:
                split = ", ".join(
                    f"{k} {v / SLOTS * 1000:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                )
                details.append(f"- {name}, run {i + 1}: {seconds:.1f} s; CPU ms per slot by process: {split}")
    if details:
        sec.details = "Per run:\n\n" + "\n".join(details)
    return sec


METHOD = (
    "`POST /v1/backfills` for one day ({day}, then the next day for the next run; the planner reads the "
    "replayed master list once) on each executor. The slots are fetched from a recorded-response server in a "
    "child process, each of the {slots} a real-sized export ({origin}), then verified, parsed and written as "
    "raw + Parquet to a local folder. Timed from the POST until all {slots} jobs are `succeeded`. "
    "**embedded**: the api's router and `common.runtime.worker.Executor` (8 worker threads) in this process, "
    "a fresh SQLite file per run, the load stage off; CPU is `os.times()` of this process. **celery**: the "
    "`celery` profile (`TRIBUTARY_PROFILE=celery`): the api's router in this process, Tributary's worker "
    "(`celery -A common.runtime.workers.celery_app worker --pool=prefork --concurrency={cores}`) on a Redis of "
    "its own, one SQLite file for all runs (each run a new day), the load stage off; CPU is the worker's "
    "process tree (psutil: main process and pool) plus this process. **cloudtasks**: the `gcp` profile on "
    "`tributary dev up`'s stack (`common.local.stack.Stack`, started in {up:.0f} s, not counted): "
    "`POST /v1/backfills` to the api function, Cloud Tasks emulator → ingest function → Pub/Sub emulator → "
    "status function → Firestore emulator, polled every 0.1 s through `GET /v1/backfills/{{id}}`; CPU is the "
    "api, ingest and status functions' process trees (the load function, which the stack's Pub/Sub also "
    "pushes to, and the emulators are in the details). The gdelt queue is lifted to {rate:.0f}/s and "
    "{concurrent} concurrent on the embedded and Cloud Tasks executors (its declared 2/s would measure the "
    "pacing); Celery runs what its {cores} processes take. No run is discarded as a warm-up (the first "
    "includes each executor's first imports). The replay server's CPU is never counted, nor Redis's."
)
