"""``make demo`` without the emulators: the embedded profile (SQLite, one process) on the bundled samples.

The same jobs as the emulated demo (one per source, its ``demo_params``), served by a recorded-response
server in this process and run by the embedded executor's workers, events and load stage; then the same
summary and warehouse tables. No Java, no Google Cloud CLI.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from common.core.errors import ConfigError
from common.gcp.secrets import env_name
from common.local.demo import all_succeeded, loaded, print_summary, print_tables
from common.local.processes import emulator_commands
from common.local.recorded import ReplayServer
from common.local.samples import materialize
from common.local.stack import DEFAULT_PORTS
from common.runtime import executors
from common.runtime.api.handlers import submit
from common.runtime.api.models import ApiError
from common.runtime.worker import Executor
from common.settings import reset_settings, settings
from common.sources import all_sources


def emulators_missing() -> str | None:
    """Why the emulated demo cannot run here (Java or an emulator missing), or None when it can."""
    try:
        emulator_commands("127.0.0.1", DEFAULT_PORTS)
    except ConfigError as exc:
        return exc.message
    return None


def embedded_environment(state_dir: Path, replay_url: str | None) -> dict[str, str]:
    """The variables of an embedded deployment under ``state_dir``, reading upstreams from ``replay_url``."""
    env = {
        "TRIBUTARY_PROFILE": "embedded",
        "TRIBUTARY_SQLITE_PATH": str(state_dir / "tributary.sqlite"),
        "TRIBUTARY_OUTPUT_URI": (state_dir / "data").as_uri(),
        "TRIBUTARY_WAREHOUSE_PATH": str(state_dir / "warehouse.duckdb"),
        "TRIBUTARY_NO_SECRET_MANAGER": "1",
    }
    for s in all_sources() if replay_url else ():
        env[f"TRIBUTARY_{s.name.upper()}_BASE_URL"] = f"{replay_url}/{s.name}"
        for secret in s.secrets:  # recorded upstreams accept any key; never forward a real one
            env[env_name(secret)] = "replay-placeholder"
    return env


def run_embedded_demo(state_dir: Path, *, timeout: float, console: Console, out: Console) -> bool:
    """Run the demo on the embedded executor; True when every job succeeded and loaded."""
    state_dir = state_dir.resolve()
    for stale in ("tributary.sqlite", "tributary.sqlite-wal", "tributary.sqlite-shm", "warehouse.duckdb", "data"):
        path = state_dir / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    replay = materialize(state_dir / "replay")
    results: list[dict[str, Any]] = []
    with ReplayServer(replay) as server:
        os.environ.update(embedded_environment(state_dir, server.url))
        reset_settings()
        executors.reset()
        s = settings()
        executor = Executor(s).start()
        try:
            store = executors.state(s)
            submitted = {}
            for source in all_sources():
                try:
                    created, _ = submit(source.name, dict(source.demo_params), trigger="demo")
                except ApiError as exc:
                    raise ConfigError(f"submitting {source.name} failed: {exc.message}") from exc
                submitted[source.name] = (created.job_id, time.monotonic())
                console.print(f"submitted {source.name}: {created.job_id}")
            deadline = time.monotonic() + timeout
            pending = dict(submitted)
            with console.status("ingesting") as status:
                while pending and time.monotonic() < deadline:
                    for name, (job_id, t0) in list(pending.items()):
                        found = store.get_job(job_id)
                        job = found.public() if found else {}
                        if job and job["status"] in ("succeeded", "failed") and loaded(job):
                            results.append({**job, "seconds": time.monotonic() - t0})
                            del pending[name]
                            console.print(f"{name}: {job['status']} ({job['records']:,} records)")
                    status.update(f"ingesting and loading: waiting for {', '.join(sorted(pending)) or 'nothing'}")
                    time.sleep(0.2)
            for name, (job_id, _) in pending.items():
                found = store.get_job(job_id)
                results.append({**(found.public() if found else {"source": name}), "seconds": timeout})
                console.print(f"[red]{name}: did not finish within {timeout:.0f} s[/red]")
        finally:
            executor.stop()
    print_summary(results, out)
    tables_ok = print_tables(state_dir / "warehouse.duckdb", out)
    return all_succeeded(results) and tables_ok
