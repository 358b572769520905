"""A recorded-response server: serves upstream payloads from a directory, on 127.0.0.1 only.

Layout: ``<root>/<source>/<path>`` answers ``GET /<source>/<path>``, so ``TRIBUTARY_<SOURCE>_BASE_URL``
is ``http://127.0.0.1:PORT/<source>``. For APIs whose answer depends on the query string, a
``<root>/<source>/_routes.json`` lists routes, first match wins::

    [{"path": "/fred/series/observations", "query": {"series_id": "DFF"},
      "file": "observations_DFF.json", "status": 200, "headers": {"Content-Type": "application/json"}}]

``query`` matches when each listed item is in the request (other items are ignored). Every request
is counted per path (``GET /_replay/hits``), so tests can assert what a run fetched. Built on the
standard library's ThreadingHTTPServer: it is test and demo plumbing with no production role.

Record mode (``--record DIR``, ``tributary dev up --record DIR``): every request is forwarded to the
source's real upstream (``TRIBUTARY_<SOURCE>_BASE_URL`` or the source's API; ``--upstream SOURCE=URL``
overrides) and its answer is written to ``DIR`` with a route, so that ``--root DIR`` replays it offline
(``common.local.recording``; keys are forwarded, never written).

Fault injection (tests/faults, RELIABILITY.md): ``POST /_replay/faults`` with a rule (or a list of rules)
makes the next matching requests misbehave; ``GET`` lists the rules with how often each was applied;
``DELETE`` removes them all. A rule matches ``path`` (and ``query`` items, as routes do); ``times`` is how
many requests it spoils (omitted: every one). Modes::

    {"path": "/gdelt/x.zip", "mode": "answer", "status": 429, "headers": {"Retry-After": "1"}, "body": "slow down"}
    {"path": "/gdelt/x.zip", "mode": "slow", "delay": 3}        # the normal answer, after ``delay`` s (max 60)
    {"path": "/gdelt/x.zip", "mode": "reset", "bytes": 100}     # headers + ``bytes`` of the body, then a TCP RST
    {"path": "/gdelt/x.zip", "mode": "truncate", "bytes": 100}  # the first ``bytes``, Content-Length agreeing
    {"path": "/gdelt/x.zip", "mode": "oversize", "bytes": 1e6}  # 200 with ``bytes`` bytes of filler
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from common.local.recording import Recorder, default_upstreams, parse_upstreams
from common.local.serve import serve_until_signalled

FAULT_MODES = ("answer", "slow", "reset", "truncate", "oversize")
#: Upper bound of a ``slow`` fault's delay (bounded waits, even for a typo in a test).
MAX_FAULT_DELAY = 60.0


class ReplayServer:
    """Serve ``root`` on 127.0.0.1:``port`` (0 = any free port) in a background thread; with ``record``
    (source -> upstream base URL), forward every request there and record the answers into ``root``."""

    def __init__(self, root: str | Path, port: int = 0, record: dict[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.recorder = Recorder(self.root, record) if record is not None else None
        self.hits: Counter[str] = Counter()
        self.faults: list[dict[str, Any]] = []
        self._faults_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/_replay/faults":
                    return self._send(200, {"Content-Type": "application/json"}, server.faults_json())
                fault = server.take_fault(self.path)
                if server.recorder is not None and urlsplit(self.path).path != "/_replay/hits":
                    server.hits[urlsplit(self.path).path] += 1
                    status, headers, body = server.recorder.answer(self.path, dict(self.headers.items()))
                else:
                    status, headers, body = server.answer(self.path)
                mode = fault["mode"] if fault else None
                if fault and mode == "answer":
                    status, headers = int(fault.get("status", 200)), {"Content-Type": "text/plain"}
                    headers.update(fault.get("headers", {}))
                    body = str(fault.get("body", "")).encode()
                elif fault and mode == "slow":
                    time.sleep(min(float(fault.get("delay", 1.0)), MAX_FAULT_DELAY))
                elif fault and mode == "truncate":
                    body = body[: int(fault.get("bytes", len(body) // 2))]
                elif fault and mode == "oversize":
                    status, body = 200, b"0" * int(fault.get("bytes", 1 << 20))
                elif fault and mode == "reset":
                    return self._reset(status, headers, body, int(fault.get("bytes", len(body) // 2)))
                self._send(status, headers, body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if urlsplit(self.path).path != "/_replay/faults":
                    return self._send(404, {"Content-Type": "text/plain"}, b"POST only to /_replay/faults\n")
                try:
                    server.add_faults(json.loads(raw or b"[]"))
                except (ValueError, TypeError) as exc:
                    return self._send(400, {"Content-Type": "text/plain"}, f"bad fault rule: {exc}\n".encode())
                self._send(200, {"Content-Type": "application/json"}, server.faults_json())

            def do_DELETE(self) -> None:
                if urlsplit(self.path).path != "/_replay/faults":
                    return self._send(404, {"Content-Type": "text/plain"}, b"DELETE only on /_replay/faults\n")
                body = server.faults_json()
                server.clear_faults()
                self._send(200, {"Content-Type": "application/json"}, body)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (e.g. timed out during a ``slow`` fault)
                    self.close_connection = True

            def _reset(self, status: int, headers: dict[str, str], body: bytes, keep: int) -> None:
                """Announce the whole body, send ``keep`` bytes of it, then abort the connection (RST)."""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:keep])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.shutdown(socket.SHUT_RD)
                self.connection.close()
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, raw_path: str) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        path = split.path
        if path == "/_replay/hits":
            return 200, {"Content-Type": "application/json"}, json.dumps(dict(self.hits)).encode()
        self.hits[path] += 1
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        source = path.strip("/").split("/", 1)[0]
        for route in self._routes(source):
            if route.get("path") == path.removeprefix(f"/{source}") and all(
                query.get(k) == str(v) for k, v in route.get("query", {}).items()
            ):
                body = (self.root / source / route["file"]).read_bytes() if route.get("file") else b""
                headers = {"Content-Type": "application/json", **route.get("headers", {})}
                return int(route.get("status", 200)), headers, body
        target = (self.root / path.lstrip("/")).resolve()
        if self.root not in target.parents or not target.is_file():
            return 404, {"Content-Type": "text/plain"}, f"no recorded response for {path}\n".encode()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return 200, {"Content-Type": ctype}, target.read_bytes()

    def add_faults(self, rules: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Add fault rules (see the module doc).

        Raises:
            ValueError: a rule without a path, or with an unknown mode.
        """
        for rule in [rules] if isinstance(rules, dict) else rules:
            if not str(rule.get("path", "")).startswith("/") or rule.get("mode") not in FAULT_MODES:
                raise ValueError(f"a fault needs a path and a mode in {FAULT_MODES}: {rule!r}")
            with self._faults_lock:
                self.faults.append({**rule, "applied": 0})

    def clear_faults(self) -> None:
        with self._faults_lock:
            self.faults.clear()

    def faults_json(self) -> bytes:
        with self._faults_lock:
            return json.dumps(self.faults).encode()

    def take_fault(self, raw_path: str) -> dict[str, Any] | None:
        """The first rule with requests left to spoil that matches ``raw_path`` (counted), or None."""
        split = urlsplit(raw_path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        with self._faults_lock:
            for rule in self.faults:
                times = rule.get("times")
                if rule["path"] != split.path or (times is not None and rule["applied"] >= int(times)):
                    continue
                if all(query.get(k) == str(v) for k, v in rule.get("query", {}).items()):
                    rule["applied"] += 1
                    return dict(rule)
        return None

    def _routes(self, source: str) -> list[dict[str, Any]]:
        file = self.root / source / "_routes.json"
        if not source or not file.is_file():
            return []
        routes: list[dict[str, Any]] = json.loads(file.read_text())
        return routes

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.recorder is not None:
            self.recorder.close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve recorded upstream responses on 127.0.0.1.")
    parser.add_argument("--root", help="the folder of recorded responses to serve")
    parser.add_argument("--record", metavar="DIR", help="forward to the real upstreams and record into DIR")
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="SOURCE=URL", help="a source's upstream when recording"
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if bool(args.root) == bool(args.record):
        parser.error("give one of --root DIR (replay) or --record DIR (record)")
    try:
        upstreams = {**default_upstreams(os.environ), **parse_upstreams(args.upstream)} if args.record else None
    except ValueError as exc:
        parser.error(str(exc))
    server = ReplayServer(args.record or args.root, args.port, record=upstreams)
    server.start()
    what = f"recording into {server.root}" if upstreams is not None else f"serving {server.root}"
    print(f"replay server on {server.url} {what}", flush=True)
    serve_until_signalled(server.stop)


if __name__ == "__main__":
    main()
