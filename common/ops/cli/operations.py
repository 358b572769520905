"""``tributary secrets``, ``reap``, ``dlq`` and ``demo`` (the last two mounted at the top level): operating a
deployment or the local stack."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from common.core.errors import ConfigError
from common.gcp.secrets import set_secret
from common.local.demo import run_demo
from common.ops.cli.common import StateDir, console, fail, options, out, target
from common.ops.dlq import list_dead, replay
from common.ops.target import LOCAL, Target, resolve
from common.runtime.reaper import reap

secrets_app = typer.Typer(help="Secrets the sources need (the local stack's secrets file, or Secret Manager).")
dlq_app = typer.Typer(help="Status events that could not be applied.", no_args_is_help=True)


@secrets_app.command("set")
def secrets_set(
    name: str,
    value: Annotated[str, typer.Argument(help="The value ('-' reads standard input).")],
    local: Annotated[
        bool, typer.Option(help="The local secrets file (the running stack's, else .tributary/secrets.json).")
    ] = False,
) -> None:
    """Store a secret where the target's functions read it: the local stack's secrets file (read at every task,
    no restart), or Secret Manager on a project (a new version; the secret is created if needed)."""
    if value == "-":
        value = sys.stdin.read().strip()
    try:
        chosen = _local_target() if local else target()
        with chosen.active() if chosen is not None else contextlib.nullcontext():
            where = set_secret(name, value, local=chosen is None or chosen.local)
    except ConfigError as exc:
        fail(exc.message)
        return
    if chosen is not None and not chosen.local:
        console.print(f"stored {name} in {where} (deployed functions read it when their instances start)")
    else:
        console.print(f"stored {name} in {where}; the local stack reads it at its next task (no restart)")


def _local_target() -> Target | None:
    """The running local stack (for ``--local``), or None: then the default local secrets file."""
    try:
        return resolve(options.state_dir, LOCAL)
    except ConfigError:
        return None


# ---- demo --------------------------------------------------------------------------------------------
def demo(state_dir: StateDir = Path(".tributary/demo"), timeout: float = 300) -> None:
    """Start the stack on the bundled samples, ingest one job per source, print a summary, stop."""
    try:
        ok = run_demo(state_dir, timeout=timeout, console=console, out=out)
    except ConfigError as exc:
        fail(exc.message)
        return
    if not ok:
        raise typer.Exit(1)


def reap_cmd(dry_run: Annotated[bool, typer.Option(help="Say what would be done; change nothing.")] = False) -> None:
    """Fail jobs stuck in running and re-enqueue stale queued ones (the reaper, run now)."""
    with target().active():
        done = reap(dry_run=dry_run)
    table = Table("job", "action", "reason")
    for r in done:
        table.add_row(r.job_id, r.action, r.reason)
    out.print(table if done else "nothing to reap")


@dlq_app.command("list")
def dlq_list(limit: int = 100, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List dead letters (unreadable events, and events whose deliveries ran out)."""
    with target().active():
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
    with target().active():
        results = replay(set(ids) if ids else None)
    for letter_id, outcome in results:
        out.print(f"{letter_id}: {outcome}")
    if not results:
        out.print("no dead letters to replay")
