"""``tributary queues``: list, pause, resume and purge the sources' queues, through the API of the target."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from common.ops.cli.common import ApiUrl, api_url, call, console, out, source_names

queues_app = typer.Typer(help="The sources' Cloud Tasks queues: list, pause, resume, purge.", no_args_is_help=True)
SourceName = Annotated[str, typer.Argument(help="A source, e.g. fred.", autocompletion=source_names)]


@queues_app.command("list")
def queues_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False, url: ApiUrl = None
) -> None:
    """Every source's queue: its state (RUNNING, PAUSED) and limits."""
    queues = call("GET", f"{api_url(url)}/v1/queues")["queues"]
    if as_json:
        out.print_json(json.dumps(queues))
        return
    table = Table("source", "state", "rate/s", "concurrent", "queue")
    for q in queues:
        table.add_row(
            q["source"],
            q["state"],
            f"{q['max_dispatches_per_second']:g}",
            str(q["max_concurrent_dispatches"]),
            q["queue"],
        )
    out.print(table)


def _act(source: str, action: str, url: str | None) -> dict[str, Any]:
    queue: dict[str, Any] = call("POST", f"{api_url(url)}/v1/queues/{source}:{action}")
    console.print(f"{source}: {action}d, queue {queue['state']}", highlight=False)
    out.print_json(json.dumps(queue))
    return queue


@queues_app.command("pause")
def queues_pause(source: SourceName, url: ApiUrl = None) -> None:
    """Pause a source's queue: its tasks wait, none is dispatched, until `resume`."""
    _act(source, "pause", url)


@queues_app.command("resume")
def queues_resume(source: SourceName, url: ApiUrl = None) -> None:
    """Resume a paused queue."""
    _act(source, "resume", url)


@queues_app.command("purge")
def queues_purge(source: SourceName, url: ApiUrl = None) -> None:
    """Delete every task in a source's queue (their jobs stay as they are: cancel them, or let the reaper act)."""
    _act(source, "purge", url)
