"""``tributary jobs``, ``sources`` and ``backfill`` (mounted at the top level): work through the API."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common.ops.cli.common import ApiUrl, api_url, call, console, fail, out, parse_params, source_names
from common.ops.cli.sources import print_source
from common.runtime.api.backfills import duration

jobs_app = typer.Typer(help="Submit and follow ingestion jobs through the API.", no_args_is_help=True)
SourceName = Annotated[str, typer.Argument(help="A source, e.g. gdelt.", autocompletion=source_names)]
Params = Annotated[
    list[str], typer.Option("--param", "-p", help="KEY=VALUE, once per key; a list as a,b,c (JSON values allowed).")
]


@jobs_app.command("submit")
def jobs_submit(
    source: SourceName,
    param: Params = [],  # noqa: B006
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Send an Idempotency-Key header.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    url: ApiUrl = None,
) -> None:
    """Submit a job and print it (as JSON)."""
    base = api_url(url)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    job = call(
        "POST", f"{base}/v1/jobs", json={"source": source, "params": parse_params(param, source)}, headers=headers
    )
    _show(base, job, wait=wait, timeout=timeout)


def _show(base: str, job: dict[str, Any], *, wait: bool, timeout: float) -> None:
    """Print the job as JSON; with ``wait``, follow it to its end first and exit 1 unless it succeeded."""
    if wait:
        job = follow(base, job["job_id"], timeout=timeout)
    out.print_json(json.dumps(job))
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("get")
def jobs_get(job_id: str, url: ApiUrl = None) -> None:
    """Print one job as JSON."""
    out.print_json(json.dumps(call("GET", f"{api_url(url)}/v1/jobs/{job_id}")))


@jobs_app.command("list")
def jobs_list(
    source: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
    url: ApiUrl = None,
) -> None:
    """List recent jobs, newest first."""
    query = {k: v for k, v in {"source": source, "status": status, "limit": limit}.items() if v is not None}
    body = call("GET", f"{api_url(url)}/v1/jobs", params=query)
    if as_json:
        out.print_json(json.dumps(body["jobs"]))
        return
    table = Table()
    # Ids are never cut: they are what `jobs get` and `jobs follow` take.
    table.add_column("job_id", no_wrap=True, min_width=max((len(j["job_id"]) for j in body["jobs"]), default=6))
    for header in ("source", "status", "records", "created_at", "error"):
        table.add_column(header)
    for j in body["jobs"]:
        table.add_row(
            j["job_id"],
            j["source"],
            j["status"],
            str(j["records"]),
            j["created_at"][:19],
            (j.get("error") or {}).get("message", "")[:60],
        )
    out.print(table)


@jobs_app.command("retry")
def jobs_retry(
    job_id: str,
    wait: Annotated[bool, typer.Option(help="Follow the new run until it ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    url: ApiUrl = None,
) -> None:
    """Run a failed or cancelled job again: the same job id, a new run (`runs` lists every run)."""
    base = api_url(url)
    job = call("POST", f"{base}/v1/jobs/{job_id}:retry")
    _show(base, job, wait=wait, timeout=timeout)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, url: ApiUrl = None) -> None:
    """Cancel a queued or running job: its queued tasks are deleted, a running part finishes, no other starts."""
    out.print_json(json.dumps(call("POST", f"{api_url(url)}/v1/jobs/{job_id}:cancel")))


@jobs_app.command("follow")
def jobs_follow(job_id: str, timeout: float = 600, url: ApiUrl = None) -> None:
    """Follow a job until it ends; exit 1 unless it succeeded."""
    job = follow(api_url(url), job_id, timeout=timeout)
    out.print_json(json.dumps(job))
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def follow(base: str, job_id: str, *, timeout: float = 600, interval: float = 0.5) -> dict[str, Any]:
    """Poll the job (bounded by ``timeout``), showing its status and progress, until it is terminal."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    last = ""
    with console.status(f"{job_id}: submitted") as status:
        while time.monotonic() < deadline:
            job = call("GET", f"{base}/v1/jobs/{job_id}")
            progress = job.get("progress") or {}
            parts = f" ({progress['done']}/{progress['total']} parts)" if progress.get("total", 0) > 1 else ""
            line = f"{job_id}: {job['status']}{parts}, attempt {job['attempt']}"
            status.update(line)
            if not console.is_terminal and line != last:  # a log or a pipe gets one line per change
                console.print(line, highlight=False)
            last = line
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(interval)
    fail(f"job {job_id} still {job.get('status')} after {timeout:.0f} s")
    return job


def sources_cmd(
    name: Annotated[
        str | None, typer.Argument(help="One source: its params and next runs.", autocompletion=source_names)
    ] = None,
    url: ApiUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the sources with their schedule, last status and watermark; with a name, that source's params."""
    body = call("GET", f"{api_url(url)}/v1/sources")
    if name is not None:
        chosen = [s for s in body["sources"] if s["name"] == name]
        if not chosen:
            fail(f"no source {name!r}; one of {', '.join(s['name'] for s in body['sources'])}")
        print_source(chosen[0], as_json=as_json)
        return
    if as_json:
        out.print_json(json.dumps(body))
        return
    table = Table("source", "schedule", "last status", "last success", "watermark")
    for s in body["sources"]:
        sched = f"{s['schedule']['cron']} ({s['schedule']['time_zone']})"
        table.add_row(
            s["name"], sched, s["last_status"] or "-", (s["last_success_at"] or "-")[:19], s["watermark"] or "-"
        )
    out.print(table)


def backfill_cmd(
    source: SourceName,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD) or datetime, UTC.")],
    end: Annotated[str, typer.Option(help="Last day, included (YYYY-MM-DD), or datetime (excluded), UTC.")],
    param: Params = [],  # noqa: B006
    follow_progress: Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until done.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to follow.")] = 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (jobs, queue rate, duration).")] = False,
    confirm: Annotated[bool, typer.Option("--confirm", help="Create a backfill over the size threshold.")] = False,
    url: ApiUrl = None,
) -> None:
    """Backfill a date range: one child job per slot or window, with a progress bar."""
    base = api_url(url)
    body: dict[str, Any] = {"source": source, "start": start, "end": end, "params": parse_params(param, source)}
    if dry_run or confirm:
        body |= {"dry_run": dry_run, "confirm": confirm}
    batch = call("POST", f"{base}/v1/backfills", json=body)
    if dry_run:
        console.print(
            f"{source}: {batch['jobs']:,} jobs; its queue ({batch['max_dispatches_per_second']:g}/s, "
            f"{batch['max_concurrent_dispatches']} at a time) needs at least {duration(batch['estimated_seconds'])}"
            + (" (over the threshold: create it with --confirm)" if batch["confirmation_required"] else "")
        )
        out.print_json(json.dumps(batch))
        return
    console.print(
        f"backfill {batch['batch_id']}: {batch['total']} jobs ({batch['created']} new, "
        f"{batch['reused']} reused from earlier runs)"
    )
    if not follow_progress:
        out.print_json(json.dumps(batch))
        return
    deadline = time.monotonic() + timeout
    own = batch["total"]
    last = ""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(source, total=own)
        while time.monotonic() < deadline:
            batch = call("GET", f"{base}/v1/backfills/{batch['batch_id']}")
            c = batch["counts"]
            description = f"{source}: {c['running']} running, {c['failed']} failed"
            bar.update(task, completed=batch["done"], description=description)
            if not console.is_terminal and (line := f"{description}, {batch['done']}/{own} done") != last:
                console.print(line, highlight=False)
                last = line
            if batch["done"] >= own:
                break
            time.sleep(1.0)
    out.print_json(json.dumps({k: batch[k] for k in ("batch_id", "status", "counts", "total", "reused")}))
    if batch["status"] != "succeeded":
        raise typer.Exit(1)
