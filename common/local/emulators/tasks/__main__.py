"""``python -m common.local.emulators.tasks``: the Cloud Tasks emulator in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from common.local.devenv import emulator_exports, render
from common.local.emulators.kit.clock import FrozenClock
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.tasks.config import MIN_DISPATCH_DEADLINE
from common.local.emulators.tasks.server import TasksEmulator
from common.local.serve import log_to_stderr, serve_until_signalled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.local.emulators.tasks",
        description="Local Cloud Tasks emulator: google.cloud.tasks.v2.CloudTasks over plaintext gRPC, and REST.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port to listen on; 0 picks one (default 8123)")
    parser.add_argument(
        "--rest-port", type=int, default=None, help="also serve the REST API (JSON over HTTP/1.1) here; 0 picks one"
    )
    parser.add_argument(
        "--dedup-window", type=float, default=3600.0, help="seconds a finished task's name stays taken (3600)"
    )
    parser.add_argument(
        "--oidc-key-file", default=None, help="RSA key for OIDC tokens (default: $TRIBUTARY_OIDC_KEY_FILE or a new key)"
    )
    parser.add_argument(
        "--min-dispatch-deadline",
        type=float,
        default=MIN_DISPATCH_DEADLINE,
        help="lowest accepted Task.dispatch_deadline in seconds (Cloud Tasks: 15)",
    )
    parser.add_argument(
        "--duplicate-deliveries",
        type=int,
        default=1,
        help="send every attempt N times at once, to test idempotent targets (default 1; faults suite: 3)",
    )
    parser.add_argument("--admin-port", type=int, default=None, help="serve POST /advance and GET /healthz")
    parser.add_argument("--frozen-clock", action="store_true", help="time moves only with POST /advance")
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="after the ready line, print the exports that point gcloud and Google's clients here",
    )
    parser.add_argument(
        "--project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT") or "local-project",
        help="the project for --print-env's CLOUDSDK_CORE_PROJECT (default $GOOGLE_CLOUD_PROJECT or local-project)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    log_to_stderr(args.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per dispatch is ours
    signer = LocalSigner(args.oidc_key_file) if args.oidc_key_file else None
    emu = TasksEmulator(
        args.host,
        args.port,
        dedup_window=args.dedup_window,
        signer=signer,
        min_dispatch_deadline=args.min_dispatch_deadline,
        duplicate_deliveries=args.duplicate_deliveries,
        clock=FrozenClock() if args.frozen_clock else None,
        admin_port=args.admin_port,
        rest_port=args.rest_port,
    )
    emu.start()
    admin = f" admin={emu.admin_address}" if emu.admin_address else ""
    rest = f" rest={emu.rest_url}/" if emu.rest_url else ""
    print(f"Cloud Tasks emulator listening on {emu.address}{rest}{admin}", flush=True)
    if args.print_env:
        exports = emulator_exports(project=args.project, tasks_rest=emu.rest_url, tasks_grpc=emu.address)
        print(render(exports), end="", flush=True)
    serve_until_signalled(emu.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
