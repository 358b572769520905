"""``tributary emulator``: the Cloud Tasks or Cloud Scheduler emulator on its own, for any project."""

from __future__ import annotations

from typing import Annotated

import typer

emulator_app = typer.Typer(
    help="Run the Cloud Tasks or Cloud Scheduler emulator on its own (gRPC and REST on 127.0.0.1).",
    no_args_is_help=True,
)
#: Options these commands do not name go to the emulator's own command line (``python -m … --help``).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@emulator_app.command("tasks", context_settings=PASS_THROUGH)
def tasks(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="gRPC port.")] = 8123,
    rest_port: Annotated[int, typer.Option(help="REST port, the one gcloud uses.")] = 8127,
) -> None:
    """Serve Cloud Tasks until Ctrl-C and print the exports for gcloud and Google's clients.

    Other options are those of `python -m common.local.emulators.tasks` (--admin-port, --frozen-clock, …).
    """
    # Imported here: the emulators load gRPC and Google's client libraries, which no other command needs.
    from common.local.emulators.tasks.__main__ import main as tasks_main

    raise typer.Exit(tasks_main(["--port", str(port), "--rest-port", str(rest_port), "--print-env", *ctx.args]))


@emulator_app.command("scheduler", context_settings=PASS_THROUGH)
def scheduler(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="gRPC port.")] = 8124,
    rest_port: Annotated[int, typer.Option(help="REST port, the one gcloud uses.")] = 8128,
    admin_port: Annotated[int, typer.Option(help="Time control: POST /advance, GET /healthz.")] = 8125,
) -> None:
    """Serve Cloud Scheduler until Ctrl-C and print the exports for gcloud and Google's clients.

    Other options are those of `python -m common.local.emulators.scheduler` (--pubsub-emulator-host, …).
    """
    from common.local.emulators.scheduler.__main__ import main as scheduler_main

    argv = ["--port", str(port), "--rest-port", str(rest_port), "--admin-port", str(admin_port), "--print-env"]
    raise typer.Exit(scheduler_main([*argv, *ctx.args]))
