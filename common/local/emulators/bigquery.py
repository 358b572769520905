"""``python -m common.local.emulators.bigquery``: the BigQuery emulator (``bqemulator``) offline, on 127.0.0.1.

``bqemulator`` runs ``INSTALL spatial`` at start, which downloads DuckDB's spatial extension (and, with format
extensions on, ``INSTALL avro``). No Tributary table has a GEOGRAPHY column, so that step is skipped and format
extensions stay off: nothing downloads (docs/google-quirks.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.local.emulators.bigquery", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9050)
    parser.add_argument("--project", default="tributary-local")
    args = parser.parse_args(argv)

    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import run_forever
    from bqemulator.storage.engine import DuckDBEngine

    DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]  # the download (see above)
    settings = Settings(
        rest_host=args.host,
        rest_port=args.port,
        grpc_host=args.host,
        grpc_port=0,
        persistence_mode=PersistenceMode.EPHEMERAL,
        default_project_id=args.project,
        enable_format_extensions=False,
        metrics_enabled=False,
        tracing_enabled=False,
        log_level=LogLevel.WARNING,
    )
    run_forever(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
