"""``tributary dev``: the local stack (emulators and functions on 127.0.0.1)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from common.core.errors import ConfigError
from common.local.devenv import all_names, render, stack_exports
from common.local.samples import materialize
from common.local.serve import serve_until_signalled
from common.local.stack import Stack, StackConfig, StackState, alive, down
from common.ops.cli.common import DEFAULT_STATE, StateDir, console, fail, out


class QueueRate(enum.StrEnum):
    """How fast the local queues dispatch and retry (common.local.provisioning)."""

    local = "local"
    declared = "declared"


dev_app = typer.Typer(help="The local stack: emulators and functions on 127.0.0.1.", no_args_is_help=True)


@dev_app.command("up")
def dev_up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once everything answers.")] = False,
    samples: Annotated[bool, typer.Option(help="Serve the project's upstream samples (offline).")] = False,
    replay: Annotated[Path | None, typer.Option(help="Serve recorded responses from this folder.")] = None,
    record: Annotated[
        Path | None, typer.Option(help="Call the real upstreams and record their answers into this folder.")
    ] = None,
    scheduler: Annotated[bool, typer.Option(help="Run the Cloud Scheduler emulator and sync schedules.")] = True,
    queue_rates: Annotated[
        QueueRate,
        typer.Option(help="local: queues dispatch fast and retry within seconds; declared: production limits."),
    ] = QueueRate.local,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Start the emulators and every function; block until Ctrl-C (or return with --detach)."""
    replay_dir = replay
    if sum((samples, replay is not None, record is not None)) > 1:
        fail("give one of --samples, --replay DIR and --record DIR")
    if samples:
        replay_dir = materialize(state_dir / "replay")
    # No placeholder secrets: a source that needs a key asks for one (`tributary secrets set`), as in the cloud.
    config = StackConfig(
        state_dir=state_dir,
        replay_dir=replay_dir,
        record_dir=record,
        scheduler=scheduler,
        queue_rates=queue_rates.value,
        secret_placeholders=False,
    )
    stack = Stack(config)
    try:
        with console.status("starting the local stack") as status:
            state = stack.up(progress=lambda msg: status.update(msg))
    except ConfigError as exc:
        fail(exc.message)
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
        fail(f"no stack is running from {state_dir} (start one with `tributary dev up`)")
        return
    running = {name: alive(pid) for name, pid in state.pids.items()}
    if as_json:
        out.print_json(json.dumps({**state.endpoints, "processes": running}))
        return
    _print_endpoints(state.endpoints)
    stopped = [n for n, ok in running.items() if not ok]
    if stopped:
        console.print(f"[yellow]not running:[/yellow] {', '.join(stopped)} (logs in {state.state_dir}/logs)")


@dev_app.command("down")
def dev_down(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Stop everything `dev up` started."""
    stopped = down(state_dir)
    console.print(f"stopped {', '.join(stopped)}" if stopped else "no stack was running")


@dev_app.command("env")
def dev_env(
    unset: Annotated[bool, typer.Option("--unset", help="Print the lines that undo the exports.")] = False,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Print the exports that point gcloud and Google's clients at the running stack: eval "$(tributary dev env)"."""
    if unset:
        typer.echo(render(dict.fromkeys(all_names(), ""), unset=True), nl=False)
        return
    state = StackState.load(state_dir.resolve())
    if state is None:
        fail(f"no stack is running from {state_dir} (start one with `tributary dev up`)")
        return
    typer.echo(render(stack_exports(state.endpoints, state.project)), nl=False)


def _print_endpoints(endpoints: dict[str, str]) -> None:
    table = Table(title="local stack", show_header=False)
    for k, v in endpoints.items():
        table.add_row(k, v)
    console.print(table)
