"""A recorded-response server: serves upstream payloads from a directory, on 127.0.0.1 only.

Layout: ``<root>/<source>/<path>`` answers ``GET /<source>/<path>``, so ``TRIBUTARY_<SOURCE>_BASE_URL``
is ``http://127.0.0.1:PORT/<source>``. For APIs whose answer depends on the query string, a
``<root>/<source>/_routes.json`` lists routes, first match wins::

    [{"path": "/fred/series/observations", "query": {"series_id": "DFF"},
      "file": "observations_DFF.json", "status": 200, "headers": {"Content-Type": "application/json"}}]

``query`` matches when each listed item is in the request (other items are ignored). Every request
is counted per path (``GET /_replay/hits``), so tests can assert what a run fetched. Built on the
standard library's ThreadingHTTPServer: it is test and demo plumbing with no production role.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import signal
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class ReplayServer:
    """Serve ``root`` on 127.0.0.1:``port`` (0 = any free port) in a background thread."""

    def __init__(self, root: str | Path, port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, headers, body = server.answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve recorded upstream responses on 127.0.0.1.")
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ReplayServer(args.root, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server._httpd.shutdown).start())
    print(f"replay server on {server.url} serving {server.root}", flush=True)
    server._httpd.serve_forever()
    server._httpd.server_close()


if __name__ == "__main__":
    main()
