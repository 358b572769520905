"""The BigQuery emulator (``bqemulator``, DuckDB-backed, BigQuery's REST API) started in this process, offline.

At start it runs ``INSTALL spatial`` (``DuckDBEngine._load_spatial``), which downloads DuckDB's spatial
extension: offline that fails, and the attempt alone would leave loopback. No Tributary table has a GEOGRAPHY
column, so the harness replaces that one step with a no-op, and turns the best-effort format extensions
(``INSTALL avro``) off. Everything else is the emulator as shipped (docs/google-quirks.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def bigquery_emulator(project: str) -> Iterator[str]:
    """Run the emulator on 127.0.0.1 (free ports) until the block ends; yields its REST URL."""
    from bqemulator.config import LogLevel, PersistenceMode
    from bqemulator.config import Settings as EmulatorSettings
    from bqemulator.server import EmulatorServer
    from bqemulator.storage.engine import DuckDBEngine

    original = DuckDBEngine._load_spatial
    DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]  # no download (see above)
    settings = EmulatorSettings(
        rest_host="127.0.0.1",
        rest_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        persistence_mode=PersistenceMode.EPHEMERAL,
        default_project_id=project,
        enable_format_extensions=False,
        metrics_enabled=False,
        log_level=LogLevel.WARNING,
        tracing_enabled=False,
    )
    server = EmulatorServer(settings)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="bqemulator", daemon=True)
    thread.start()
    try:
        if not started.wait(60) or failure:
            raise RuntimeError(f"the BigQuery emulator did not start: {failure[0] if failure else 'timeout'}")
        yield server.rest_url
    finally:
        if not failure and loop.is_running():
            future: Any = asyncio.run_coroutine_threadsafe(server.stop(), loop)
            future.result(30)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        DuckDBEngine._load_spatial = original  # type: ignore[method-assign]
