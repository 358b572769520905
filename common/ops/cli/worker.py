"""``tributary worker``: the Celery executor's worker (the rollback path, ``TRIBUTARY_DISPATCH=celery``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from common.ops.cli.common import fail
from common.runtime import executors
from common.sources import all_sources


def worker_cmd(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=0, max=256, help="Worker processes (0: one per core).")
    ] = 0,
    sources: Annotated[
        str, typer.Option("--sources", help="Comma-separated sources whose queues to consume (default: all).")
    ] = "",
    loglevel: Annotated[str, typer.Option("--loglevel", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a Celery worker on TRIBUTARY_CELERY_BROKER_URL: one queue per source, the same ingest code as the
    ingest function, acks_late, retries with the source's backoff. Same as
    `celery -A common.runtime.workers.celery_app worker --pool=prefork`."""
    known = {s.name for s in all_sources()}
    chosen = [name.strip() for name in sources.split(",") if name.strip()]
    if unknown := sorted(set(chosen) - known):
        fail(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    if loglevel.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        fail(f"unknown log level {loglevel!r}; choose DEBUG, INFO, WARNING or ERROR")
    try:
        from common.runtime.workers.celery_app import app, worker_argv  # Celery: only this command needs it
    except ImportError as exc:
        fail(f"the Celery executor needs the celery extra ({exc.name} is missing): pip install 'tributary[celery]'")
    if "celery" not in executors.dispatchers_in_use():
        typer.echo("note: no source is dispatched to Celery (TRIBUTARY_DISPATCH, _PROFILE, _DISPATCH_ROUTES)", err=True)
    processes = concurrency or os.cpu_count() or 1
    app.worker_main(argv=worker_argv(concurrency=processes, sources=chosen or None, loglevel=loglevel.upper()))
