"""The ``tributary`` command: the local stack, jobs, sources, secrets, and the demo.

One module per concern: :mod:`.dev` (the local stack), :mod:`.jobs` (jobs, sources and backfills through
the API), :mod:`.operations` (secrets, the reaper, dead letters, the demo), :mod:`.warehouse` (queries),
``scheduler.cli`` (schedules); :mod:`.common` holds what they share. Here they are mounted, in the order
``--help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from common.ops.cli import cost as _cost  # noqa: F401 - registers `tributary jobs cost`
from common.ops.cli.common import api_url, options
from common.ops.cli.dev import dev_app
from common.ops.cli.embedded import run_cmd, serve_cmd
from common.ops.cli.emulator import emulator_app
from common.ops.cli.errors import FriendlyGroup
from common.ops.cli.jobs import backfill_cmd, follow, jobs_app, sources_cmd
from common.ops.cli.operations import demo, dlq_app, reap_cmd, secrets_app
from common.ops.cli.queues import queues_app
from common.ops.cli.warehouse import query_cmd
from common.ops.cli.worker import worker_cmd

__all__ = ["api_url", "app", "follow"]

app = typer.Typer(
    cls=FriendlyGroup, help="Tributary: event-driven data ingestion on Google Cloud.", no_args_is_help=True
)


@app.callback()
def main(
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="'local' (the running local stack) or a Google Cloud project id."),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", help="Same as --target PROJECT.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of a failure.")] = False,
) -> None:
    """Tributary: event-driven data ingestion on Google Cloud.

    Commands that reach a deployment resolve one target, in this order: --target/--project, the environment
    (TRIBUTARY_PROJECT or GOOGLE_CLOUD_PROJECT, TRIBUTARY_API_URL, emulator hosts), the running local stack,
    the Google Cloud CLI's configured project; each says which on stderr.
    """
    options.target, options.debug = target or project, debug


app.add_typer(dev_app, name="dev")
app.add_typer(emulator_app, name="emulator")
app.add_typer(jobs_app, name="jobs")
app.add_typer(queues_app, name="queues")
app.add_typer(secrets_app, name="secrets")
app.command("sources")(sources_cmd)
app.command("demo")(demo)
app.command("serve")(serve_cmd)
app.command("run")(run_cmd)


def _mount_optional() -> None:
    """Sub-commands whose modules may be absent in a trimmed deployment bundle."""
    try:
        from scheduler.cli import schedule_app
    except ImportError:  # pragma: no cover
        return
    app.add_typer(schedule_app, name="schedule")


_mount_optional()
app.command("backfill")(backfill_cmd)
app.command("reap")(reap_cmd)
app.add_typer(dlq_app, name="dlq")
app.command("query")(query_cmd)
app.command("worker")(worker_cmd)
