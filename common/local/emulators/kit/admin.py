"""The time-control HTTP server of an emulator: ``POST /advance {"seconds": N}`` and ``GET /healthz``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("tributary.emulators.admin")


class AdminServer:
    """Serves ``advance(seconds) -> dict`` (a ``RuntimeError`` answers 400) and ``health() -> dict`` on
    ``host:port`` (0 picks a free port) from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        advance: Callable[[float], dict[str, Any]],
        health: Callable[[], dict[str, Any]],
        name: str = "emulator",
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            server_version = f"tributary-{name}-emulator"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("admin: " + format, *args)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._reply(status, {"error": {"code": status, "message": message}})

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/healthz":
                    self._reply(200, health())
                else:
                    self._error(404, f"no such path: {self.path}")

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/advance":
                    self._error(404, f"no such path: {self.path}")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > 65536:
                        raise ValueError("body too large")
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    seconds = payload["seconds"]
                    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                        raise ValueError("seconds must be a non-negative number")
                except (ValueError, KeyError, TypeError) as exc:
                    self._error(400, f'expected {{"seconds": N}} with N >= 0: {exc}')
                    return
                try:
                    answer = advance(float(seconds))
                except RuntimeError as exc:
                    self._error(400, str(exc))
                    return
                self._reply(200, answer)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"{name}-admin", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=max(0.1, timeout))
