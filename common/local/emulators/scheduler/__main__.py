"""``python -m common.local.emulators.scheduler``: the Cloud Scheduler emulator in the foreground until SIGTERM."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

from common.local.devenv import emulator_exports, render
from common.local.emulators.kit.clock import FrozenClock
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.scheduler.server import SchedulerEmulator
from common.local.serve import log_to_stderr, serve_until_signalled


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.local.emulators.scheduler",
        description="Local Cloud Scheduler emulator: google.cloud.scheduler.v1 over plaintext gRPC, and REST.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (default: any free port)")
    parser.add_argument(
        "--rest-port", type=int, default=None, help="also serve the REST API (JSON over HTTP/1.1) here; 0 picks one"
    )
    parser.add_argument(
        "--pubsub-emulator-host",
        default=os.environ.get("PUBSUB_EMULATOR_HOST") or None,
        help="HOST:PORT of Google's Pub/Sub emulator, where Pub/Sub targets publish (default $PUBSUB_EMULATOR_HOST)",
    )
    parser.add_argument("--admin-port", type=int, default=None, help="serve POST /advance and GET /healthz")
    parser.add_argument("--oidc-key-file", default=None, help="RSA key shared with the other emulators")
    parser.add_argument("--frozen-clock", action="store_true", help="time moves only with POST /advance")
    parser.add_argument("--no-fire", action="store_true", help="store and schedule jobs, send no request")
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(list(argv) if argv is not None else None)
    log_to_stderr(args.log_level)
    signer = LocalSigner(args.oidc_key_file) if args.oidc_key_file else None
    emulator = SchedulerEmulator(
        args.host,
        args.port,
        signer=signer,
        clock=FrozenClock() if args.frozen_clock else None,
        fire=not args.no_fire,
        admin_port=args.admin_port,
        rest_port=args.rest_port,
        pubsub_emulator_host=args.pubsub_emulator_host,
    )
    emulator.start()
    admin = f" admin={emulator.admin_address}" if emulator.admin_address else ""
    rest = f" rest={emulator.rest_url}/" if emulator.rest_url else ""
    print(f"scheduler emulator ready on {emulator.address}{rest}{admin}", flush=True)
    if args.print_env:
        exports = emulator_exports(
            project=args.project,
            scheduler_rest=emulator.rest_url,
            scheduler_grpc=emulator.address,
            pubsub=args.pubsub_emulator_host,
        )
        print(render(exports), end="", flush=True)
    serve_until_signalled(emulator.stop)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
