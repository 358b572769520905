"""Time control of the Cloud Tasks emulator over HTTP: ``POST /advance {"seconds": N}`` and ``GET /healthz``."""

from __future__ import annotations

from typing import Any

from common.local.emulators.kit.admin import AdminServer
from common.local.emulators.kit.timeconv import timestamp
from common.local.emulators.tasks.engine import TasksEngine


def serve_admin(engine: TasksEngine, host: str, port: int) -> AdminServer:
    """Serve the engine's time control on ``host:port`` (0: a free port). ``/advance`` answers the new time."""

    def now() -> str:
        return str(timestamp(engine.clock.time()).ToJsonString())

    def advance(seconds: float) -> dict[str, Any]:
        engine.advance(seconds)
        return {"now": now()}

    def health() -> dict[str, Any]:
        return {"status": "ok", "now": now(), "queues": engine.queue_count()}

    return AdminServer(host, port, advance=advance, health=health, name="tasks")
