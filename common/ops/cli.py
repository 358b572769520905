"""The ``tributary`` command: the local stack, jobs, sources, secrets, and the demo."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from common.core.errors import ConfigError
from common.local.stack import StackState, alive, down
from common.ops.dlq import list_dead, replay
from common.ops.target import Target, resolve
from common.runtime.reaper import reap
from common.settings import settings

app = typer.Typer(help="Tributary: event-driven data ingestion on Google Cloud.", no_args_is_help=True)
dev_app = typer.Typer(help="The local stack: emulators and functions on 127.0.0.1.", no_args_is_help=True)
jobs_app = typer.Typer(help="Submit and follow ingestion jobs through the API.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets the sources need (Secret Manager, or the environment locally).")
app.add_typer(dev_app, name="dev")
app.add_typer(jobs_app, name="jobs")
app.add_typer(secrets_app, name="secrets")

console = Console(stderr=True)
out = Console()

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the stack keeps its state and logs.")]
DEFAULT_STATE = Path(".tributary/dev")


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


# ---- dev ---------------------------------------------------------------------------------------------
@dev_app.command("up")
def dev_up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once everything answers.")] = False,
    samples: Annotated[bool, typer.Option(help="Serve the project's upstream samples (offline).")] = False,
    replay: Annotated[Path | None, typer.Option(help="Serve recorded responses from this folder.")] = None,
    scheduler: Annotated[bool, typer.Option(help="Run the Cloud Scheduler emulator and sync schedules.")] = True,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Start the emulators and every function; block until Ctrl-C (or return with --detach)."""
    from common.local.serve import serve_until_signalled
    from common.local.stack import Stack, StackConfig

    replay_dir = replay
    if samples:
        from common.local.samples import materialize

        replay_dir = materialize(state_dir / "replay")
    stack = Stack(StackConfig(state_dir=state_dir, replay_dir=replay_dir, scheduler=scheduler))
    try:
        with console.status("starting the local stack") as status:
            state = stack.up(progress=lambda msg: status.update(msg))
    except ConfigError as exc:
        _fail(exc.message)
    _print_endpoints(state.endpoints)
    if detach:
        console.print("stack running; stop it with [bold]tributary dev down[/bold]")
        return
    console.print("stack running; Ctrl-C stops it")
    serve_until_signalled(stack.down)
    console.print("stack stopped")


@dev_app.command("status")
def dev_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoints as JSON.")] = False,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Show the running stack's endpoints (exit 1 when none runs)."""
    state = StackState.load(state_dir.resolve())
    if state is None:
        _fail(f"no stack is running from {state_dir} (start one with `tributary dev up`)")
        return
    alive = {name: alive(pid) for name, pid in state.pids.items()}
    if as_json:
        out.print_json(json.dumps({**state.endpoints, "processes": alive}))
        return
    _print_endpoints(state.endpoints)
    down = [n for n, ok in alive.items() if not ok]
    if down:
        console.print(f"[yellow]not running:[/yellow] {', '.join(down)} (logs in {state.state_dir}/logs)")


@dev_app.command("down")
def dev_down(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Stop everything `dev up` started."""
    stopped = down(state_dir)
    console.print(f"stopped {', '.join(stopped)}" if stopped else "no stack was running")


def _print_endpoints(endpoints: dict[str, str]) -> None:
    table = Table(title="local stack", show_header=False)
    for k, v in endpoints.items():
        table.add_row(k, v)
    console.print(table)


# ---- jobs --------------------------------------------------------------------------------------------
def api_url(explicit: str | None, state_dir: Path = DEFAULT_STATE) -> str:
    """The API to talk to: --api-url, TRIBUTARY_API_URL, or the running local stack."""
    if explicit:
        return explicit.rstrip("/")
    if configured := settings().api_url:
        return configured.rstrip("/")
    state = StackState.load(state_dir.resolve())
    if state is None:
        _fail("no API given: pass --api-url, set TRIBUTARY_API_URL, or start the local stack")
        raise AssertionError
    return state.endpoints["api_url"]


ApiUrl = Annotated[str | None, typer.Option("--api-url", help="The API's base URL (default: the local stack).")]


def _call(method: str, url: str, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", {})
    if key := settings().api_key:
        headers["X-API-Key"] = key
    try:
        response = httpx.request(method, url, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"could not reach {url}: {exc}")
        raise AssertionError from exc
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        _fail(f"{response.status_code} {err.get('code', '')}: {err.get('message', response.text)}")
    return body


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs. A value stays a string (the source's params model converts "5" to 5 where a
    number is wanted, and keeps "20240115120000" a slot) unless it is a JSON list, object or quoted string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param takes KEY=VALUE, not {item!r}")
        if value[:1] in ("[", "{", '"'):
            try:
                params[key] = json.loads(value)
                continue
            except json.JSONDecodeError as exc:
                _fail(f"--param {key}: {value!r} is not valid JSON ({exc.msg})")
        params[key] = value
    return params


@jobs_app.command("submit")
def jobs_submit(
    source: str,
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (JSON values allowed).")] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Send an Idempotency-Key header.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    url: ApiUrl = None,
) -> None:
    """Submit a job and print it (as JSON)."""
    base = api_url(url)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    job = _call("POST", f"{base}/v1/jobs", json={"source": source, "params": _parse_params(param)}, headers=headers)
    if wait:
        job = follow(base, job["job_id"], timeout=timeout)
    out.print_json(json.dumps(job))
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("get")
def jobs_get(job_id: str, url: ApiUrl = None) -> None:
    """Print one job as JSON."""
    out.print_json(json.dumps(_call("GET", f"{api_url(url)}/v1/jobs/{job_id}")))


@jobs_app.command("list")
def jobs_list(
    source: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    url: ApiUrl = None,
) -> None:
    """List recent jobs, newest first."""
    query = {k: v for k, v in {"source": source, "status": status, "limit": limit}.items() if v is not None}
    body = _call("GET", f"{api_url(url)}/v1/jobs", params=query)
    table = Table("job_id", "source", "status", "records", "created_at", "error")
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
    with console.status(f"{job_id}: submitted") as status:
        while time.monotonic() < deadline:
            job = _call("GET", f"{base}/v1/jobs/{job_id}")
            progress = job.get("progress") or {}
            parts = f" ({progress['done']}/{progress['total']} parts)" if progress.get("total", 0) > 1 else ""
            status.update(f"{job_id}: {job['status']}{parts}, attempt {job['attempt']}")
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(interval)
    _fail(f"job {job_id} still {job.get('status')} after {timeout:.0f} s")
    return job


@app.command("sources")
def sources_cmd(url: ApiUrl = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the sources with their schedule, last status and watermark."""
    body = _call("GET", f"{api_url(url)}/v1/sources")
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


# ---- secrets -----------------------------------------------------------------------------------------
@secrets_app.command("set")
def secrets_set(
    name: str,
    value: Annotated[str, typer.Argument(help="The value ('-' reads standard input).")],
    local: Annotated[bool, typer.Option(help="Store in .tributary/secrets.json for the local stack.")] = False,
) -> None:
    """Store a secret in Secret Manager (a new version; the secret is created if needed)."""
    import sys

    from common.gcp.secrets import set_secret

    if value == "-":
        value = sys.stdin.read().strip()
    try:
        where = set_secret(name, value, local=local)
    except ConfigError as exc:
        _fail(exc.message)
        return
    console.print(f"stored {name} in {where}")


# ---- demo --------------------------------------------------------------------------------------------
@app.command("demo")
def demo(state_dir: StateDir = Path(".tributary/demo"), timeout: float = 300) -> None:
    """Start the stack on the bundled samples, ingest one job per source, print a summary, stop."""
    from common.local.demo import run_demo

    try:
        ok = run_demo(state_dir, timeout=timeout, console=console, out=out)
    except ConfigError as exc:
        _fail(exc.message)
        return
    if not ok:
        raise typer.Exit(1)


def _mount_optional() -> None:
    """Sub-commands whose modules may be absent in a trimmed deployment bundle."""
    try:
        from scheduler.cli import schedule_app
    except ImportError:  # pragma: no cover
        return
    app.add_typer(schedule_app, name="schedule")


_mount_optional()


# ---- operations: backfills, reaper, dead letters ----------------------------------------------------
@app.command("backfill")
def backfill_cmd(
    source: str,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD) or datetime, UTC.")],
    end: Annotated[str, typer.Option(help="Last day, included (YYYY-MM-DD), or datetime (excluded), UTC.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE for every child job.")] = [],  # noqa: B006
    follow_progress: Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until done.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to follow.")] = 3600,
    url: ApiUrl = None,
) -> None:
    """Backfill a date range: one child job per slot or window, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    base = api_url(url)
    body = {"source": source, "start": start, "end": end, "params": _parse_params(param)}
    batch = _call("POST", f"{base}/v1/backfills", json=body)
    console.print(
        f"backfill {batch['batch_id']}: {batch['total']} jobs ({batch['created']} new, "
        f"{batch['reused']} reused from earlier runs)"
    )
    if not follow_progress:
        out.print_json(json.dumps(batch))
        return
    deadline = time.monotonic() + timeout
    own = batch["total"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(source, total=own)
        while time.monotonic() < deadline:
            batch = _call("GET", f"{base}/v1/backfills/{batch['batch_id']}")
            c = batch["counts"]
            bar.update(
                task, completed=batch["done"], description=f"{source}: {c['running']} running, {c['failed']} failed"
            )
            if batch["done"] >= own:
                break
            time.sleep(1.0)
    out.print_json(json.dumps({k: batch[k] for k in ("batch_id", "status", "counts", "total", "reused")}))
    if batch["status"] != "succeeded":
        raise typer.Exit(1)


def _target(state_dir: Path = DEFAULT_STATE) -> Target:
    """The deployment to operate on: the one this shell's settings name, else the running local stack."""
    return resolve(state_dir)


@app.command("reap")
def reap_cmd(dry_run: Annotated[bool, typer.Option(help="Say what would be done; change nothing.")] = False) -> None:
    """Fail jobs stuck in running and re-enqueue stale queued ones (the reaper, run now)."""
    with _target().active():
        done = reap(dry_run=dry_run)
    table = Table("job", "action", "reason")
    for r in done:
        table.add_row(r.job_id, r.action, r.reason)
    out.print(table if done else "nothing to reap")


dlq_app = typer.Typer(help="Status events that could not be applied.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(limit: int = 100, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List dead letters (unreadable events, and events whose deliveries ran out)."""
    with _target().active():
        letters = [d.summary() for d in list_dead(limit=limit)]
    if as_json:
        out.print_json(json.dumps(letters))
        return
    table = Table("id", "where", "reason", "received", "preview")
    for d in letters:
        table.add_row(d["id"], d["where"], d["reason"][:60], d["received_at"][:19], d["preview"][:40])
    out.print(table if letters else "no dead letters")


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead letters to replay (default: all).")] = None,
) -> None:
    """Apply dead letters again; those that apply are removed."""
    with _target().active():
        results = replay(set(ids) if ids else None)
    for letter_id, outcome in results:
        out.print(f"{letter_id}: {outcome}")
    if not results:
        out.print("no dead letters to replay")
