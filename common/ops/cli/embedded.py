"""``tributary serve`` and ``tributary run``: the embedded executor, with no Google service and no emulator.

``serve`` runs the api (the same function, routes and OpenAPI document as the deployed one), the workers,
the event drain, the cron clock and the reaper in one process; ``run`` runs one job to completion in the
foreground and prints it. Both use the embedded profile (SQLite state in ``TRIBUTARY_SQLITE_PATH``) unless
``TRIBUTARY_PROFILE`` (or a port's own setting) says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from common.core.jobs import Job
from common.ops.cli.common import console, fail, out, parse_params, source_names
from common.runtime import executors
from common.runtime.api.handlers import submit
from common.runtime.api.models import ApiError
from common.runtime.worker import Executor
from common.settings import Settings, settings, use_settings
from common.sources import get_source

log = logging.getLogger("tributary.serve")


@contextlib.contextmanager
def embedded_settings() -> Iterator[Settings]:
    """The settings, with the embedded profile unless the environment chose one."""
    s = settings()
    if "TRIBUTARY_PROFILE" not in os.environ:
        s = s.model_copy(update={"profile": "embedded"})
    with use_settings(s):
        yield s


def _uses_embedded_queue(s: Settings) -> bool:
    return "embedded" in executors.dispatchers(s)


def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8080,
    workers: Annotated[int | None, typer.Option(help="Worker threads (default TRIBUTARY_EMBEDDED_WORKERS).")] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=0, max=64, help="Worker processes, 0: one per core (default TRIBUTARY_EMBEDDED_PROCESSES)."),
    ] = None,
) -> None:
    """Serve the API with the workers, the scheduler and the reaper in this process (until Ctrl-C)."""
    # The api's own app (same routes, OpenAPI, errors), imported here: functions-framework and the function's
    # module (which sets up logging) are no cost of the other commands.
    from functions_framework import create_app
    from werkzeug.serving import make_server

    import functions.api

    logging.basicConfig(level=settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with embedded_settings() as s:
        app = create_app("api", functions.api.__file__)
        server = make_server(host, port, app, threaded=True)
        executor = None
        if _uses_embedded_queue(s):
            executor = Executor(s, workers=workers, processes=processes, clock=True, reap=True, submit=_scheduled)
            try:
                executor.start()
            except RuntimeError as exc:  # a worker process did not start
                server.server_close()
                fail(str(exc))
        dispatch, bus, store = executors.chosen(s)
        pool = f", {executor.processes} worker processes" if executor is not None and executor.processes > 1 else ""
        console.print(
            f"tributary serve: http://{host}:{server.server_port} (dispatch {dispatch}, events {bus}, "
            f"state {store} at {s.sqlite_path if store == 'sqlite' else s.project}{pool})",
            highlight=False,
        )
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            if executor is not None:
                executor.stop()


def _scheduled(source: str) -> None:
    """What Cloud Scheduler's job for ``source`` posts: its daily params, as a new submission."""
    submit(source, dict(get_source(source).daily_params), trigger="schedule")


def run_cmd(
    source: Annotated[str, typer.Argument(help="A source, e.g. gdelt.", autocompletion=source_names)],
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="KEY=VALUE, once per key; a list as a,b,c (JSON values allowed).")
    ] = [],  # noqa: B006
    idempotency_key: Annotated[str | None, typer.Option(help="A new key runs a job again.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 3600,
) -> None:
    """Run one job to completion here (no server, no emulators) and print it (as JSON)."""
    with embedded_settings() as s:
        job = run_job(source, parse_params(param, source), idempotency_key=idempotency_key, timeout=timeout, s=s)
    out.print_json(json.dumps(job.public()))
    if job.status.value != "succeeded":
        raise typer.Exit(1)


def run_job(
    source: str,
    params: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    timeout: float = 3600,
    s: Settings | None = None,
    show: bool = True,
) -> Job:
    """Submit the job and run the executor until it ends; returns the job.

    Raises:
        typer.Exit: the params are refused, or the job did not end within ``timeout``.
    """
    s = s or settings()
    try:
        job, _ = submit(source, params, idempotency_key=idempotency_key, trigger="cli")
    except ApiError as exc:
        fail(f"{exc.message}" + (f" (field {exc.field})" if exc.field else ""))
        raise
    executor = Executor(s).start() if _uses_embedded_queue(s) else None
    store = executors.state(s)
    deadline = time.monotonic() + timeout
    last = ""
    try:
        with console.status(f"{job.job_id}: {job.status.value}") as status:
            while time.monotonic() < deadline:
                current = store.get_job(job.job_id)
                assert current is not None
                progress = current.progress
                parts = f" ({progress.done}/{progress.total} parts)" if progress and progress.total > 1 else ""
                line = f"{current.job_id}: {current.status.value}{parts}, attempt {current.attempt}"
                if show:
                    status.update(line)
                    if not console.is_terminal and line != last:
                        console.print(line, highlight=False)
                last = line
                if current.status.terminal:
                    return current
                time.sleep(0.1)
    finally:
        if executor is not None:
            executor.stop()
    fail(f"job {job.job_id} still {last or job.status.value} after {timeout:.0f} s")
    raise AssertionError("unreachable")
