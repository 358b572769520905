"""Tributary's Celery executor as a user runs the ``celery`` profile, for P7 and P8.

``TRIBUTARY_PROFILE=celery``: Celery dispatch on a Redis broker, SQLite state and embedded events. The api
side runs in this process (``submit`` or the api's router, as ``TRIBUTARY_PROFILE=celery tributary serve``
would); Tributary's worker is the documented ``celery -A common.runtime.workers.celery_app worker`` (what
``tributary worker`` runs), prefork, on the same SQLite file, where each worker process applies the job's
events with the status rule as it publishes them.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.core import Context

#: Longest a run may take before it is abandoned (a stuck worker must not hang ``make bench``).
RUN_TIMEOUT = 300.0


@contextmanager
def worker(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker in its own process group until the block ends; waits until it says it is ready."""
    from common.local.celery_stack import worker_ready
    from common.local.processes import stop_groups, wait_until

    ready = worker_ready(log)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(ready, "a Celery worker", 60, proc, log)
        yield proc
    finally:
        stop_groups({"worker": proc.pid})
        proc.wait(timeout=10)


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and its children (a prefork pool's processes).

    A child that exited is not counted (Celery's pool keeps its processes for the worker's life).
    """
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
    except psutil.Error:
        pass
    return total


def own_cpu() -> float:
    """User + system CPU seconds so far of this process (all its threads)."""
    t = os.times()
    return t.user + t.system


@dataclass
class CeleryProfile:
    """A running Tributary Celery worker and the settings this process submits with."""

    settings: Any
    proc: subprocess.Popen[bytes]

    def worker_cpu(self) -> float:
        """CPU seconds so far of the worker (its main process and its pool's processes)."""
        return tree_cpu(self.proc.pid)


def profile_env(ctx: Context, broker_url: str, sqlite_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the ``celery`` profile, for the worker and (as settings) for this process."""
    return {
        "TRIBUTARY_PROFILE": "celery",
        "TRIBUTARY_CELERY_BROKER_URL": broker_url,
        "TRIBUTARY_SQLITE_PATH": str(sqlite_path),
        "TRIBUTARY_OUTPUT_URI": (ctx.workdir / "celery-data").as_uri(),
        # The pipeline's own cost, as P4 and P6 (whose warehouse loads are not measured either).
        "TRIBUTARY_EMBEDDED_LOAD": "0",
        "TRIBUTARY_EXTRA_SOURCES": "tests.bench.noop:Noop",
        "TRIBUTARY_NO_SECRET_MANAGER": "1",
        "TRIBUTARY_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ctx.repo),
        **extra,
    }


@contextmanager
def tributary_celery(
    ctx: Context, broker_url: str, concurrency: int, queues: list[str], **extra: str
) -> Iterator[CeleryProfile]:
    """Tributary's Celery worker (celery profile, a fresh SQLite file) consuming ``queues``; yields it with the
    settings under which this process submits (same broker, same SQLite file). ``extra``: more variables."""
    from common.local.redis import celery_worker_command
    from common.settings import Settings

    sqlite_path = ctx.workdir / f"celery-{uuid.uuid4().hex[:8]}.sqlite"
    env = profile_env(ctx, broker_url, sqlite_path, **extra)
    s = Settings.from_env({**os.environ, **env})
    log = ctx.workdir / f"tributary-worker-{sqlite_path.stem}.log"
    with worker(celery_worker_command(concurrency, queues=queues), env, log, ctx.repo) as proc:
        yield CeleryProfile(s, proc)


def wait_succeeded(store: Any, filters: dict[str, str], n: int, timeout: float = RUN_TIMEOUT) -> None:
    """Wait (bounded) until ``n`` jobs matching ``filters`` have succeeded in ``store``.

    Raises:
        AssertionError: a job failed, or they did not all succeed within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while (done := store.count_by({**filters, "status": "succeeded"})) < n:
        if store.count_by({**filters, "status": "failed"}):
            raise AssertionError("a job failed")
        if time.monotonic() > deadline:
            raise AssertionError(f"{done} of {n} jobs succeeded within {timeout:.0f} s")
        time.sleep(0.02)


def celery_noop_jobs(profile: CeleryProfile, n: int) -> float:
    """Seconds for ``n`` no-op jobs through the celery profile: each submitted here as the api does (validate,
    create the job in SQLite, claim its task id, send the Celery task), run by the worker through ``run_task``
    (its ``started`` and ``succeeded`` events applied to the job in SQLite); until all ``n`` have succeeded.

    Raises:
        AssertionError: a job failed, or not all succeeded within :data:`RUN_TIMEOUT`.
    """
    from common.runtime import executors
    from common.runtime.api.handlers import submit
    from common.settings import use_settings

    run = uuid.uuid4().hex[:8]
    with use_settings(profile.settings):
        store = executors.state(profile.settings)
        before = store.count_by({"source": "noop", "status": "succeeded"})
        start = time.perf_counter()
        for i in range(n):
            submit("noop", {"run": run, "n": i}, trigger="bench")
        wait_succeeded(store, {"source": "noop"}, before + n)
        return time.perf_counter() - start
