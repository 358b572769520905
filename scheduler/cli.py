"""``tributary schedule``: show and apply the difference between the sources' schedules and Cloud Scheduler.

The lead mounts :data:`schedule_app` on the main CLI. Cloud clients, settings and the sources are
imported inside the commands, so ``tributary --help`` pays for none of them.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from common.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from scheduler.sync import ApplyResult, Plan

DEFAULT_API_URL = "http://127.0.0.1:8080"

schedule_app = typer.Typer(
    help=(
        "Schedules as code: one Cloud Scheduler job per source (tributary-<source>) that POSTs "
        "{source, params} to the API. Only tributary-* jobs are ever touched."
    ),
    no_args_is_help=True,
)

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar=list(Settings.env_names("api_url")),
        help="Base URL of the api function the jobs call (default: the target's; the local stack's is "
        f"{DEFAULT_API_URL}).",
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=list(Settings.env_names("schedule_overrides")),
        help="TOML file of per-source overrides: one table per source with cron, time_zone, paused.",
        exists=True,
        dir_okay=False,
    ),
]


def _load_sources() -> list[Any]:
    """The registered sources (``common.sources.all_sources()``), imported on use."""
    try:
        from common.sources import all_sources
    except ImportError as exc:
        typer.secho(
            f"cannot load the sources: common.sources.all_sources() is not available ({exc})",
            err=True,
            fg="red",
        )
        raise typer.Exit(2) from exc
    return list(all_sources())


def _is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (a real Cloud Scheduler can never call it)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _api_url(given: str | None, target: Any) -> str:
    """The URL the jobs call: --api-url (or TRIBUTARY_API_URL), else the target's; never loopback for a project.

    Raises:
        typer.Exit: a real project with a loopback or unknown API URL.
    """
    url = given or target.api_url or (DEFAULT_API_URL if target.local else "")
    if not target.local and not url:
        typer.secho(
            f"error: which API should {target.describe()}'s jobs call? pass --api-url (deploy.sh prints it) "
            "or set TRIBUTARY_API_URL",
            err=True,
        )
        raise typer.Exit(2)
    if not target.local and _is_loopback(url):
        typer.secho(
            f"error: refusing to point {target.describe()}'s Cloud Scheduler jobs at {url}, a loopback address "
            "no Google service can reach; pass --api-url with the deployed api's URL",
            err=True,
        )
        raise typer.Exit(2)
    return url


def _plan(api_url: str | None, config: Path | None) -> tuple[Plan, Any]:
    from common.ops.cli.common import target
    from scheduler import sync

    chosen = target()
    api_url = _api_url(api_url, chosen)
    s = chosen.settings
    try:
        overrides = sync.load_overrides(config) if config else None
        desired = sync.desired_jobs(
            _load_sources(),
            project=s.project,
            region=s.region,
            api_url=api_url,
            service_account=s.invoker_service_account,
            overrides=overrides,
            reaper=True,
        )
    except (ValueError, RuntimeError) as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from exc
    client = chosen.scheduler
    return sync.plan(desired, sync.live_jobs(client, s.project, s.region)), client


def _state(job: Any) -> str:
    from google.cloud import scheduler_v1

    return "paused" if job.state == scheduler_v1.Job.State.PAUSED else "enabled"


def _describe(job: Any) -> str:
    return f"{job.schedule} ({job.time_zone or 'UTC'}), {_state(job)}"


def _print_plan(the_plan: Plan, *, prune: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if the_plan.empty:
        console.print(f"[green]In sync[/green]: {len(the_plan.unchanged)} job(s), nothing to change.")
        return
    table = Table(title="tributary schedule", show_lines=False)
    table.add_column("action")
    table.add_column("job")
    table.add_column("details")
    for job in the_plan.create:
        table.add_row("[green]create[/green]", job.name.rsplit("/", 1)[-1], _describe(job))
    for change in the_plan.update:
        details = []
        for path in change.paths:
            if path in ("schedule", "time_zone", "description"):
                details.append(f"{path}: {getattr(change.live, path)!r} -> {getattr(change.desired, path)!r}")
            else:
                details.append(f"{path} changed")
        if change.pause:
            details.append("pause")
        if change.resume:
            details.append("resume")
        table.add_row("[yellow]update[/yellow]", change.name.rsplit("/", 1)[-1], "; ".join(details))
    for job in the_plan.delete:
        action = "[red]delete[/red]" if prune else "[dim]delete (needs --prune)[/dim]"
        table.add_row(action, job.name.rsplit("/", 1)[-1], "no source schedules it any more")
    console.print(table)
    if the_plan.unchanged:
        console.print(f"{len(the_plan.unchanged)} job(s) unchanged.")


def _print_result(result: ApplyResult) -> None:
    from rich.console import Console

    verb = "would" if result.dry_run else "did"
    parts = [
        f"{len(result.created)} create",
        f"{len(result.updated)} update",
        f"{len(result.paused)} pause",
        f"{len(result.resumed)} resume",
        f"{len(result.deleted)} delete",
    ]
    line = f"{'Dry run: ' if result.dry_run else ''}{verb} " + ", ".join(parts)
    if result.kept:
        line += f"; kept {len(result.kept)} stale job(s) (use --prune to delete)"
    Console().print(line)


@schedule_app.command()
def diff(api_url: ApiUrl = None, config: ConfigFile = None) -> None:
    """Show the jobs a sync would create, update or delete."""
    the_plan, _ = _plan(api_url, config)
    _print_plan(the_plan, prune=True)


@schedule_app.command()
def sync(
    prune: Annotated[bool, typer.Option("--prune", help="Delete tributary-* jobs no source schedules.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
    api_url: ApiUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create, update, pause or resume the jobs so that Cloud Scheduler matches the sources."""
    from scheduler import sync as sync_module

    the_plan, client = _plan(api_url, config)
    _print_plan(the_plan, prune=prune)
    if the_plan.empty:
        return
    _print_result(sync_module.apply(the_plan, client, prune=prune, dry_run=dry_run))


__all__ = ["schedule_app"]
