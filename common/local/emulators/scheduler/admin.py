"""Time control of the Cloud Scheduler emulator over HTTP: ``POST /advance {"seconds": N}`` and ``GET /healthz``."""

from __future__ import annotations

from typing import Any

from common.local.emulators.kit.admin import AdminServer
from common.local.emulators.scheduler.cron import rfc3339
from common.local.emulators.scheduler.engine import SchedulerEngine


def serve_admin(engine: SchedulerEngine, host: str, port: int) -> AdminServer:
    """Serve the engine's time control on ``host:port`` (0: a free port). ``/advance`` answers what it fired."""

    def advance(seconds: float) -> dict[str, Any]:
        records = engine.advance(seconds)
        return {"fired": [r.to_dict() for r in records], "now": rfc3339(engine.now())}

    def health() -> dict[str, Any]:
        return {"status": "ok", "now": rfc3339(engine.now()), "jobs": engine.job_count()}

    return AdminServer(host, port, advance=advance, health=health, name="scheduler")
